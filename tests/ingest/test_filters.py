"""PostMaster filters in the config file, and X-OTRS headers only from a trusted relay."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.config.schema import ConfigError, load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Ticket

from helpers import count, mail, make_config, outbox_mails

HOT = "hotline@example.com"
FILTERS = [
    {"name": "spam", "match": {"From": r"@spam\.test$"}, "ignore": True},
    {"name": "german", "match": {"Subject": "^Drucker"}, "queue": "Support-DE", "language": "de"},
    {"name": "urgent", "match": {"Subject": "urgent", "From": "@vip\\.test"}, "priority": 5},
    {"name": "monitoring", "match": {"body": "CRITICAL: host"}, "auto": True, "queue": "Hotline"},
]


@pytest.fixture
def filtered(db_url: str) -> Pipeline:
    return Pipeline(make_config(db_url, filter=FILTERS))


def ticket(p: Pipeline, number: str) -> Ticket:
    with p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def test_ignore_stores_and_answers_nothing(filtered: Pipeline) -> None:
    r = filtered.deliver_one(mail("Buy now", sender="x@spam.test"), HOT)
    assert r.status == "ignored" and r.notes == ["ignored by filter spam"]
    assert count(filtered, Ticket) == 0 and outbox_mails(filtered) == []


def test_queue_language_priority_and_auto(filtered: Pipeline) -> None:
    de = filtered.deliver_one(mail("Drucker kaputt"), HOT)
    assert de.queue == "Support-DE" and ticket(filtered, de.ticket_number).language == "de"
    [ack] = outbox_mails(filtered)
    assert "Guten Tag" in ack.get_content() or "Ihre" in ack.get_content()
    vip = filtered.deliver_one(mail("URGENT: down", sender="boss@vip.test"), HOT)
    assert ticket(filtered, vip.ticket_number).priority == 5
    plain = filtered.deliver_one(mail("urgent too", sender="x@other.test"), HOT)
    assert ticket(filtered, plain.ticket_number).priority == 3  # every regex must match
    queues = [
        {"name": "Hotline", "addresses": [HOT], "auto_tickets": True},
        {"name": "Support-DE", "addresses": ["support@example.de"]},
    ]
    p = Pipeline(make_config(filtered.config.database.url, filter=FILTERS, queue=queues))
    before = len(outbox_mails(p))
    alert = p.deliver_one(mail("Alert", "CRITICAL: host db1 down"), HOT)
    assert alert.new_ticket and len(outbox_mails(p)) == before  # machine mail: no answer
    assert alert.notes == ["no auto response: filter monitoring"]


def test_bad_filters_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[filter]]\nname = "x"\nmatch = { Subject = "(" }\n')
    with pytest.raises(
        ConfigError,
        match=r"filter\[0\]\.match: Subject: '\(' is not a regular expression",
    ):
        load(cfg)
    cfg.write_text('[[filter]]\nname = "x"\nmatch = { Subject = "a" }\nqueue = "Nope"\n')
    with pytest.raises(ConfigError, match="filter\\[0\\] \\(x\\): no queue named 'Nope'"):
        load(cfg)


def test_x_otrs_headers_only_from_the_trusted_relay(db_url: str) -> None:
    steer = {"X-OTRS-Queue": "Support-DE", "X-OTRS-Priority": "5 very high"}
    untrusted = Pipeline(make_config(db_url))
    r = untrusted.deliver_one(mail("x", headers=steer), HOT)
    assert r.queue == "Hotline" and ticket(untrusted, r.ticket_number).priority == 3
    trusted = Pipeline(make_config(db_url, system={"trusted_relay": "relay.example.com"}))
    forged = {"Received": "from evil.test (evil.test [192.0.2.1]) by mx", **steer}
    r = trusted.deliver_one(mail("y", headers=forged), HOT)
    assert r.queue == "Hotline"
    relayed = {"Received": "from relay.example.com (relay [10.0.0.1]) by mx", **steer}
    r = trusted.deliver_one(mail("z", headers=relayed), HOT)
    assert r.queue == "Support-DE" and ticket(trusted, r.ticket_number).priority == 5
