"""Issue 28 in the pipeline: spam verdicts believed only from our own MTA's filter, the
Junk queue (silent, no customer, out of the stats, purged), spam/ham (ingest/junk.py)
and their lessons (a real learn command), and no automatic mail to a sender nobody
vouched for. The same with real rspamd, SpamAssassin, Postfix and DNS:
tests/entry/test_spam_postfix.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from otrs_mailgate.ingest import junk
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.jobs import junkpurge
from otrs_mailgate.outbound.outbox import CUSTOMER_KINDS, Sender
from otrs_mailgate.store import db
from otrs_mailgate.store.models import (
    Article,
    Attachment,
    Customer,
    History,
    Outbox,
    Queue,
    RawMessage,
    Ticket,
    utcnow,
)
from otrs_mailgate.tickets import queries, refs
from otrs_mailgate.web import stats

from cli_helpers import cli, write_config
from helpers import count, mail, make_config

HOT = "hotline@example.com"
QID = "4ZqW2k1x3Bz9"
OURS = (
    "Received: from client.customer.test (client.customer.test [192.0.2.7])\r\n"
    f"\tby mx.mailgate.test (Postfix) with ESMTP id {QID}\r\n"
    "\tfor <hotline@example.com>; Mon, 07 Dec 2026 10:00:00 +0000 (UTC)\r\n"
)


def rspamd_mail(subject: str, score: float, qid: str = QID, body: str = "Buy now.") -> bytes:
    """A mail as it reaches us after rspamd's milter: our Received on top, rspamd's
    headers appended at the end of the header (where rspamd puts them)."""
    result = f"default: {'True' if score >= 6 else 'False'} [{score:.2f} / 15.00]; R_SPF_FAIL(1.0)"
    return OURS.encode() + mail(
        subject,
        body,
        sender="Offers <offers@spam.test>",
        headers={"X-Spamd-Result": result, "X-Rspamd-Queue-Id": qid, "X-Rspamd-Server": "mx"},
    )


def spam_config(db_url: str, tmp_path: Path, **spam: object) -> dict[str, object]:
    learned = tmp_path / "learned"
    learned.mkdir(exist_ok=True)
    return {
        "spam": {
            "filter": "rspamd",
            "mta_hostnames": ["mx.mailgate.test"],
            # a real command, run as the Sender runs it: the raw mail on its stdin
            "learn_command": f"sh -c 'cat > {learned}/{{kind}}-$$.eml'",
            **spam,
        },
        "agents": {"authserv_id": "mx.mailgate.test"},
    }


@pytest.fixture
def p(db_url: str, tmp_path: Path) -> Pipeline:
    pipeline = Pipeline(make_config(db_url, **spam_config(db_url, tmp_path)))
    pipeline.dns = lambda name, timeout=5: None  # no DKIM keys from anywhere
    return pipeline


def ticket_of(p: Pipeline, number: str) -> tuple[str, str, int | None]:
    """(queue, state, customer id)."""
    with p.sessions() as s:
        row = s.execute(
            select(Queue.name, Ticket.state, Ticket.customer_id)
            .join(Queue, Queue.id == Ticket.queue_id)
            .where(Ticket.number == number)
        ).one()
    return row[0], row[1], row[2]


def history(p: Pipeline, number: str) -> list[tuple[str, dict[str, object]]]:
    with p.sessions() as s:
        rows = s.execute(
            select(History.type, History.detail)
            .join(Ticket, Ticket.id == History.ticket_id)
            .where(Ticket.number == number)
            .order_by(History.id)
        ).all()
    return [(t, json.loads(d) if d else {}) for t, d in rows]


def outbox(p: Pipeline) -> list[tuple[str, str, str]]:
    with p.sessions() as s:
        rows = s.execute(select(Outbox.kind, Outbox.status, Outbox.rcpt_to).order_by(Outbox.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_our_filters_spam_verdict_files_it_in_junk_and_nothing_goes_out(p: Pipeline) -> None:
    number = p.deliver_one(rspamd_mail("Cheap watches", 12.5), HOT).ticket_number
    assert ticket_of(p, number) == ("Junk", "new", None)  # no customer made of a spammer
    assert outbox(p) == []  # no acknowledgement, no notification
    assert count(p, Customer) == 0
    [check] = [d for t, d in history(p, number) if t == "SpamCheck"]
    assert check == {
        "article_id": check["article_id"], "filter": "rspamd", "score": 12.5, "spam": True,
        "filed_in": "Junk",
    }  # fmt: skip
    # a follow-up naming the Junk ticket is spam too: never onto anybody's ticket
    follow = rspamd_mail(f"Re: [Ticket#{number}] Cheap watches", 9.0, qid="5AbC")
    follow = follow.replace(QID.encode(), b"5AbC", 1)
    other = p.deliver_one(follow, HOT).ticket_number
    assert other != number and ticket_of(p, other)[0] == "Junk"


def test_a_low_score_is_no_spam(p: Pipeline) -> None:
    number = p.deliver_one(rspamd_mail("Printer", 1.5), HOT).ticket_number
    assert ticket_of(p, number)[0] == "Hotline"
    assert [k for k, _, _ in outbox(p)] == ["acknowledgement"]


def test_verdict_headers_from_outside_are_not_believed_and_the_history_says_so(
    p: Pipeline,
) -> None:
    # the sender's own "no spam" on spam: another queue id than our Received names
    forged = rspamd_mail("Cheap watches", -20.0, qid="FORGED1").replace(
        b"X-Spamd-Result", b"X-Spam: No\r\nX-Spamd-Result", 1
    )
    number = p.deliver_one(forged, HOT).ticket_number
    assert ticket_of(p, number)[0] == "Hotline"  # unscored: not ours to call spam or not
    [check] = [d for t, d in history(p, number) if t == "SpamCheck"]
    assert "ignored" in check and "not our filter's" in str(check["ignored"])
    assert "X-Spam" in str(check["ignored"])
    # "spam" written by a sender about his own mail, without any Received of ours
    raw = mail("Invoice", headers={"X-Spamd-Result": "default: True [99.00 / 15.00]"})
    number = p.deliver_one(raw, HOT).ticket_number
    assert ticket_of(p, number)[0] == "Hotline"
    [check] = [d for t, d in history(p, number) if t == "SpamCheck"]
    assert "no Received header of our MTA" in str(check["ignored"])


@pytest.mark.parametrize(
    ("host", "status", "queue"),
    [
        ("mx.mailgate.test", "Yes, score=12.3 required=5.0 tests=GTUBE", "Junk"),
        ("mx.mailgate.test", "No, score=1.2 required=5.0 tests=NONE", "Hotline"),
        ("somebody.else.test", "Yes, score=12.3 required=5.0 tests=GTUBE", "Hotline"),
    ],
)
def test_spamassassin_headers_as_spamass_milter_writes_them(
    db_url: str, tmp_path: Path, host: str, status: str, queue: str
) -> None:
    """spamass-milter puts its headers in place of the first of each name; the checker
    line names the host spamd runs on, which must be one of ours."""
    p = Pipeline(make_config(db_url, **spam_config(db_url, tmp_path, filter="spamassassin")))
    raw = OURS.encode() + mail(
        "Offer",
        headers={
            "X-Spam-Checker-Version": f"SpamAssassin 4.0.1 (2024-03-25) on {host}",
            "X-Spam-Flag": "YES" if status.startswith("Yes") else "NO",
            "X-Spam-Level": "************",
            "X-Spam-Status": status + "\r\n\tautolearn=no autolearn_force=no version=4.0.1",
        },
    )
    number = p.deliver_one(raw, HOT).ticket_number
    assert ticket_of(p, number)[0] == queue


def _transaction(p: Pipeline):  # type: ignore[no-untyped-def]
    return db.transaction(p.sessions)


def test_spam_then_ham_move_teach_and_answer(p: Pipeline, tmp_path: Path) -> None:
    number = p.deliver_one(mail("Printer", "It burns.", sender="cus@customer.test"), HOT)
    number = number.ticket_number
    p.ensure_queues()
    # spam: to Junk, closed, the acknowledgement not yet sent is dropped
    with _transaction(p) as s:
        ticket = refs.load(s.connection(), refs.id_of(s.connection(), number))
        assert "moved to Junk" in junk.check(p.site, s, ticket, "spam")
        junk.spam(p.site, s, ticket, "admin", utcnow())
    assert ticket_of(p, number)[:2] == ("Junk", "closed")
    assert ("acknowledgement", "cancelled", "cus@customer.test") in outbox(p)
    # ham: back where its mail routes, as a new ticket, acknowledged
    with _transaction(p) as s:
        ticket = refs.load(s.connection(), refs.id_of(s.connection(), number))
        assert "filed again as a new ticket in Hotline" in junk.check(p.site, s, ticket, "ham")
        junk.ham(p.site, s, ticket, "admin", utcnow())
    assert ticket_of(p, number)[:2] == ("Hotline", "new")
    rows = outbox(p)
    assert ("acknowledgement", "queued", "cus@customer.test") in rows
    assert [k for k, _, _ in rows if k.startswith("learn_")] == ["learn_spam", "learn_ham"]
    # the Sender runs the learn command with each raw mail on its stdin
    Sender(p.config, p.sessions).run_pass()
    learned = sorted(f.name.split("-")[0] for f in (tmp_path / "learned").iterdir())
    assert learned == ["ham", "spam"]
    assert all(b"It burns." in f.read_bytes() for f in (tmp_path / "learned").iterdir())
    assert [s for k, s, _ in outbox(p) if k.startswith("learn_")] == ["sent", "sent"]
    kinds = [t for t, _ in history(p, number)]
    assert kinds.index("MarkedSpam") < kinds.index("MarkedHam")


def test_a_filter_that_cannot_learn_keeps_the_lesson_and_says_why(
    db_url: str, tmp_path: Path
) -> None:
    """A failing learn command: the row waits and retries with the reason; the ticket
    moved all the same (the agent is never kept waiting by the filter)."""
    cfg = spam_config(db_url, tmp_path, learn_command="sh -c 'echo filter down >&2; exit 3'")
    p = Pipeline(make_config(db_url, **cfg))
    number = p.deliver_one(mail("Printer"), HOT).ticket_number
    p.ensure_queues()
    with _transaction(p) as s:
        ticket = refs.load(s.connection(), refs.id_of(s.connection(), number))
        junk.spam(p.site, s, ticket, "admin", utcnow())
    Sender(p.config, p.sessions).run_pass()
    with p.sessions() as s:
        row = s.execute(select(Outbox).where(Outbox.kind == "learn_spam")).scalar_one()
    assert row.status == "queued" and "exited 3: filter down" in row.last_error
    assert row.data is not None and b"Please help." in row.data  # the lesson is kept
    assert ticket_of(p, number)[:2] == ("Junk", "closed")


def test_cli_spam_and_ham_and_their_errors(tmp_path: Path, db_url: str) -> None:
    learned = tmp_path / "learned"
    extra = (
        '[spam]\nfilter = "rspamd"\nmta_hostnames = ["mx.mailgate.test"]\n'
        f"learn_command = \"sh -c 'cat > {learned}/{{kind}}-$$.eml'\"\n"
    )
    cfg = write_config(tmp_path / "c.toml", db_url, extra)
    assert cli(cfg, "init").returncode == 0
    p = Pipeline(make_config(db_url, **spam_config(db_url, tmp_path)))
    number = p.deliver_one(mail("Printer"), HOT).ticket_number
    done = cli(cfg, "ticket", "spam", number)
    assert done.returncode == 0, done.stderr
    assert f"ticket {number}: spam: moved to Junk, closed".encode() in done.stdout
    again = cli(cfg, "ticket", "spam", number)
    assert b"was spam in Junk already" in again.stdout
    # purged meanwhile: ham cannot file it again, says so, and changes nothing
    with db.transaction(p.sessions) as s:
        s.execute(
            update(Ticket)
            .where(Ticket.number == number)
            .values(updated_at=utcnow() - dt.timedelta(days=40))
        )
    assert junkpurge.purge(p.site, p.sessions) == 1
    before = history(p, number)
    refused = cli(cfg, "ticket", "ham", number)
    assert refused.returncode == 1
    assert b"its mail was purged" in refused.stderr
    assert history(p, number) == before and ticket_of(p, number)[:2] == ("Junk", "closed")
    unknown = cli(cfg, "ticket", "ham", "2026010110000017")
    assert unknown.returncode == 1 and b"no ticket" in unknown.stderr


def test_no_junk_queue_no_spam_command(db_url: str) -> None:
    """Without [spam] there is no Junk: `spam` is refused with the reason."""
    p = Pipeline(make_config(db_url))
    number = p.deliver_one(mail("Printer"), HOT).ticket_number
    with _transaction(p) as s:
        ticket = refs.load(s.connection(), refs.id_of(s.connection(), number))
        with pytest.raises(junk.JunkError, match="no Junk queue"):
            junk.check(p.site, s, ticket, "spam")


def test_junk_is_purged_after_its_days_and_leaves_the_index(p: Pipeline) -> None:
    raw = rspamd_mail("Cheap zanzibarwatches", 12.0, body="Unique word quokkaspam here.")
    spam_number = p.deliver_one(raw, HOT).ticket_number
    good_number = p.deliver_one(mail("Printer quokkaspam"), HOT).ticket_number
    assert sorted(numbers(p, "quokkaspam")) == sorted([spam_number, good_number])
    old = utcnow() - dt.timedelta(days=31)
    with db.transaction(p.sessions) as s:
        s.execute(update(Ticket).values(updated_at=old))
    raws = count(p, RawMessage)
    assert junkpurge.purge(p.site, p.sessions) == 1
    assert junkpurge.purge(p.site, p.sessions) == 0  # once
    with p.sessions() as s:
        spam_id = refs.id_of(s.connection(), spam_number)
        [article] = s.execute(select(Article).where(Article.ticket_id == spam_id)).scalars()
        assert (article.body_text, article.raw_id) == ("", None)
        assert article.subject == "Cheap zanzibarwatches"  # what came is still told
        if s.get_bind().dialect.name == "sqlite":
            s.execute(text("INSERT INTO article_fts(article_fts) VALUES('integrity-check')"))
    assert count(p, RawMessage) == raws - 1
    assert numbers(p, "quokkaspam") == [good_number]  # the purged words are gone
    assert ticket_of(p, spam_number)[:2] == ("Junk", "closed")
    assert ticket_of(p, good_number)[0] == "Hotline"  # other queues keep their mail
    [purged] = [d for t, d in history(p, spam_number) if t == "Purged"]
    assert purged == {"articles": 1, "days": 30}


def test_junk_attachments_are_purged(p: Pipeline) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "offers@spam.test"
    msg["To"] = HOT
    msg["Subject"] = "Invoice"
    msg.set_content("See attached.")
    msg.add_attachment(b"MZ\x90\x00 payload", maintype="application", subtype="octet-stream",
                       filename="invoice.exe")  # fmt: skip
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    head = (
        f"X-Rspamd-Queue-Id: {QID}\r\nX-Spamd-Result: default: True [20.00 / 15.00]\r\n"
    ).encode()
    number = p.deliver_one(OURS.encode() + head + raw, HOT).ticket_number
    assert ticket_of(p, number)[0] == "Junk" and count(p, Attachment) == 1
    with db.transaction(p.sessions) as s:
        s.execute(update(Ticket).values(updated_at=utcnow() - dt.timedelta(days=31)))
    junkpurge.purge(p.site, p.sessions)
    assert count(p, Attachment) == 0


def numbers(p: Pipeline, query: str) -> list[str]:
    with p.sessions() as s:
        rows, _ = queries.results(s, p.config, query, 50)
    return [r["number"] for r in rows]


def test_stats_leave_junk_out(p: Pipeline) -> None:
    p.deliver_one(rspamd_mail("Cheap watches", 12.0), HOT)
    p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT)
    today = utcnow().date()
    with p.sessions() as s:
        report = stats.build(s.connection(), p.config, today - dt.timedelta(days=1), today)
    assert report["total"]["created"] == 1
    assert [t["address"] for t in report["top_senders"]] == ["cus@customer.test"]


# -- no automatic mail to a sender nobody vouched for ----------------------------------------


def authenticated_config(db_url: str, tmp_path: Path) -> dict[str, object]:
    cfg = spam_config(db_url, tmp_path)
    cfg["queue"] = [
        {"name": "Hotline", "addresses": [HOT], "acknowledge": "authenticated"},
        {"name": "Support-DE", "addresses": ["support@example.de"], "acknowledge": False},
    ]
    return cfg


def test_acknowledgements_only_to_authenticated_senders(db_url: str, tmp_path: Path) -> None:
    p = Pipeline(make_config(db_url, **authenticated_config(db_url, tmp_path)))
    p.dns = lambda name, timeout=5: None
    plain = p.deliver_one(mail("Printer", sender="anyone@customer.test"), HOT)
    ours = "mx.mailgate.test; spf=pass smtp.mailfrom=customer.test; dmarc=pass header.from=customer.test"  # noqa: E501
    vouched = p.deliver_one(
        mail("Toner", sender="cus@customer.test", headers={"Authentication-Results": ours}), HOT
    )
    forged = "mx.mailgate.test; spf=pass smtp.mailfrom=elsewhere.test; dmarc=fail header.from=customer.test"  # noqa: E501
    unaligned = p.deliver_one(
        mail("Paper", sender="x@customer.test", headers={"Authentication-Results": forged}), HOT
    )
    someone_elses = "relay.other.test; dmarc=pass header.from=customer.test"
    foreign = p.deliver_one(
        mail("Ink", sender="y@customer.test", headers={"Authentication-Results": someone_elses}),
        HOT,
    )
    rows = {to: status for kind, status, to in outbox(p) if kind == "acknowledgement"}
    assert rows == {
        "anyone@customer.test": "held",
        "cus@customer.test": "queued",
        "x@customer.test": "held",
        "y@customer.test": "held",
    }
    with p.sessions() as s:
        why = {
            to: error
            for to, error in s.execute(
                select(Outbox.rcpt_to, Outbox.last_error).where(Outbox.status == "held")
            )
        }
    assert "elsewhere.test not aligned with customer.test" in why["x@customer.test"]
    assert "no Authentication-Results of ours" in why["y@customer.test"]
    for r in (plain, vouched, unaligned, foreign):
        assert ticket_of(p, r.ticket_number)[0] == "Hotline"  # every one a ticket
    # the agents heard of all four
    assert len([k for k, _, _ in outbox(p) if k == "notification_new"]) == 0  # no agents yet
    # ham on a ticket outside Junk vouches for its sender: the held one goes
    p.ensure_queues()
    with _transaction(p) as s:
        ticket = refs.load(s.connection(), refs.id_of(s.connection(), plain.ticket_number))
        assert junk.ham(p.site, s, ticket, "admin", utcnow()) == [
            "1 held automatic answer(s) released"
        ]
    assert ("acknowledgement", "queued", "anyone@customer.test") in outbox(p)


def test_outbox_list_held_names_the_reason(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    assert cli(cfg, "init").returncode == 0
    p = Pipeline(make_config(db_url, queue=[{"name": "Hotline", "addresses": [HOT],
                                             "acknowledge": "authenticated"}]))  # fmt: skip
    p.dns = lambda name, timeout=5: None
    p.deliver_one(mail("Printer", sender="forged@bank.test"), HOT)
    listing = cli(cfg, "outbox", "list", "--held")
    assert listing.returncode == 0
    assert b"forged@bank.test" in listing.stdout and b"not authenticated" in listing.stdout


def test_the_corpus_gets_no_automatic_mail_from_us(
    corpus: Path, db_url: str, tmp_path: Path
) -> None:
    """Every real-world mail of ../shared/corpus as it would come from outside, none with
    our Authentication-Results: not one automatic answer leaves for any of them (held
    where one was due); each is still filed."""
    p = Pipeline(make_config(db_url, **authenticated_config(db_url, tmp_path)))
    p.dns = lambda name, timeout=5: None
    files = sorted(f for f in corpus.rglob("*") if f.suffix in (".eml", ".box", ".msg", ".txt"))
    filed = 0
    for path in files:
        try:
            p.deliver_one(path.read_bytes(), HOT, "sender@outside.test")
            filed += 1
        except Exception:  # not a mail (cpython's data has fragments): nothing to answer
            continue
    assert filed >= 40
    with p.sessions() as s:
        rows = s.execute(select(Outbox.kind, Outbox.status)).all()
    customer = [(k, st) for k, st in rows if k in CUSTOMER_KINDS]
    assert customer and all(st == "held" for _, st in customer), customer
