"""Every rule of the classifier, both ways: present -> machine mail; absent or "no" -> human."""

from __future__ import annotations

import pytest

from otrs_mailgate.mail.classify import AUTO, HUMAN, REPORT, classify
from otrs_mailgate.mail.parse import parse

from helpers import mail

OURS = {"mailgate.test"}
OUR_ADDRESSES = {"hotline@example.com"}

# (header, value that makes it machine mail, value that does not or None for "absent")
RULES = [
    ("Auto-Submitted", "auto-replied", "no"),
    ("Auto-Submitted", "auto-generated", "No"),
    ("Precedence", "bulk", "first-class"),
    ("Precedence", "junk", None),
    ("Precedence", "list", None),
    ("Precedence", "auto_reply", None),
    ("X-Precedence", "bulk", None),
    ("List-Id", "<news.example.org>", None),
    ("List-Unsubscribe", "<mailto:leave@example.org>", None),
    ("X-Loop", "hotline@example.com", "someone@else.test"),
    ("X-Autoreply", "yes", "no"),
    ("X-Autorespond", "yes", None),
    ("X-Autoresponder", "yes", None),
    ("X-Auto-Response-Suppress", "All", "None"),
    ("X-AutoReply-From", "robot@x.test", None),
    ("X-Mail-Autoreply", "yes", None),
]


@pytest.mark.parametrize(("name", "yes", "no"), RULES)
def test_header_rules_both_ways(name: str, yes: str, no: str | None) -> None:
    machine = classify(parse(mail("x", headers={name: yes})), "a@b.test", OURS, OUR_ADDRESSES)
    assert machine.kind == AUTO and name.lower() in machine.reason.lower()
    headers = {name: no} if no is not None else {}
    human = classify(parse(mail("x", headers=headers)), "a@b.test", OURS, OUR_ADDRESSES)
    assert human.kind == HUMAN, human


def test_null_return_path_both_ways() -> None:
    m = parse(mail("x"))
    assert classify(m, "", OURS).reason == "null return path"
    assert classify(m, "alice@customer.test", OURS).kind == HUMAN
    assert classify(m, None, OURS).kind == HUMAN  # unknown (an import) is not null


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@x.test", "postmaster@x.test", "mailer-daemon@y"])
def test_daemon_senders(sender: str) -> None:
    assert classify(parse(mail("x", sender=sender)), sender, OURS).kind == AUTO
    assert (
        classify(parse(mail("x", sender="daemon.fan@x.test")), "daemon.fan@x.test", OURS).kind
        == HUMAN
    )


def test_message_id_in_our_domain_both_ways() -> None:
    ours = parse(mail("x", message_id="abc@mailgate.test"))
    assert classify(ours, "a@b.test", OURS).reason == "Message-ID in our own domain"
    theirs = parse(mail("x", message_id="abc@phone.mailgate.test"))
    assert classify(theirs, "a@b.test", OURS).kind == HUMAN


def test_delivery_reports() -> None:
    from test_bounces import dsn

    assert classify(parse(dsn("m@mailgate.test", "x@y.test")), "", OURS).kind == REPORT
    plain_mixed = mail("x", headers={"Content-Type": "multipart/mixed; boundary=B"})
    assert classify(parse(plain_mixed), "a@b.test", OURS).kind == HUMAN
