"""The status page inside `serve`: signed links, what customers and agents see, escaping,
security headers, reports with charts, /metrics."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import tokens
from otrs_mailgate.outbound import notify
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Ticket
from otrs_mailgate.tickets import agents, links
from otrs_mailgate.web import views

from agent_helpers import Desk, SigningDomain
from cli_helpers import cli, write_config
from helpers import mail, make_config, outbox_mails
from lmtp_helpers import RawLMTP, free_port, running
from web_helpers import EVIL, HOT, Browser, link_in, story


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    pipeline.config.web.port = free_port()
    return Desk(pipeline, signing)


def login_link(desk: Desk, login: str) -> str:
    with db.transaction(desk.p.sessions) as s:
        _agent, url = notify.mail_login_link(s, desk.p.config, login)
    [mailed] = [m for m in desk.to(f"{login}@{desk.domain.domain}") if "status page" in
                str(m["Subject"])]  # fmt: skip
    assert link_in(mailed) == url
    return url


def articles(desk: Desk) -> int:
    with desk.p.sessions() as s:
        return s.execute(select(func.count()).select_from(Article)).scalar_one()


def test_customer_page_from_the_acknowledgement(desk: Desk) -> None:
    number, url = story(desk)
    assert url.startswith(f"http://127.0.0.1:{desk.p.config.web.port}/t/")
    with running(desk.p.config) as daemon:
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        page = web.get(url)
    assert page.status == 200
    html = page.body
    assert f"Ticket {number}" in html and ">open<" in html  # alice answered
    assert "We replaced the toner; please try again." in html
    assert "Der Drucker druckt nur noch Streifen." in html
    assert "Replies go by mail" in html
    # no internal note, no agent address, no agent's token address
    assert "third toner" not in html
    assert "alice@" not in html and "bob@" not in html and "hotline+" not in html
    # everything from mail is escaped
    assert EVIL not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    headers = page.headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"


def test_forged_altered_expired_links_reveal_nothing(desk: Desk) -> None:
    number, url = story(desk)
    token = url.rsplit("/", 1)[1]
    last = "a" if token[-1] != "a" else "b"  # only the spare bits of the last character
    altered = [token[:-1] + last, token[:20] + ("a" if token[20] != "a" else "b") + token[21:]]
    with desk.p.engine.connect() as conn:
        secret = links.site_secret(conn)
        ticket_id = conn.execute(select(Ticket.id).where(Ticket.number == number)).scalar_one()
    long_ago = dt.date.today() - dt.timedelta(days=desk.p.config.web.customer_link_days + 1)
    expired = links.customer_url(desk.p.config, secret, ticket_id, long_ago).rsplit("/", 1)[1]
    forged = tokens.make("00" * 32, 0, ticket_id, "customer", dt.date(2099, 1, 1))
    # an agent's valid login token is no customer link
    with db.transaction(desk.p.sessions) as s:
        alice = agents.by_login(s.connection(), "alice")
    login = tokens.make(alice.secret, alice.id, 0, "login", dt.date(2099, 1, 1))
    before = articles(desk)
    with running(desk.p.config) as daemon:
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        assert web.get(url).status == 200
        bodies = set()
        for bad in (*altered, expired, forged, login, "x", "0" * 44):
            page = web.get(f"/t/{bad}")
            assert page.status == 403, bad
            assert number not in page.body and "Drucker" not in page.body
            assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
            bodies.add(page.body)
        assert len(bodies) == 1  # the same words whatever was wrong
        assert web.get("/agent").status == 403  # no session
        assert web.get(f"/agent/login/{token}").status == 403  # a customer link is no login
        assert web.get("/nowhere").status == 404
    assert articles(desk) == before  # looking changes nothing


def test_agent_pages_through_the_mailed_login_link(desk: Desk) -> None:
    number, _ = story(desk)
    url = login_link(desk, "alice")
    with running(desk.p.config) as daemon:
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        overview = web.get(url)  # sets the cookie, redirects to /agent
        assert overview.status == 200, overview.body
        assert "Queues" in overview.body and "Hotline" in overview.body
        assert "Support-DE" not in overview.body  # alice has no grant there
        ticket = web.get(f"/agent/ticket/{number}")
        assert ticket.status == 200
        assert "Internal: third toner this month." in ticket.body  # agents see notes
        assert "internal note" in ticket.body and "<h2>History</h2>" in ticket.body
        assert EVIL not in ticket.body
        found = web.get("/agent/search?q=streifen+queue%3AHotline")
        assert found.status == 200 and number in found.body
        bad = web.get("/agent/search?q=streifen+OR")
        assert "position 10: OR needs something on both sides" in bad.body
        report = web.get("/agent/reports?by=day")
        assert report.status == 200
        assert (
            report.body.count("<svg") == 2 and "Tickets created and closed per day" in report.body
        )
        assert "Time to first response" in report.body
        assert web.get("/agent/reports?from=2026-99-01").status == 200  # says so, no 500

        # an agent with no grant on the queue sees none of its tickets
        with db.transaction(desk.p.sessions) as s:
            agents.add(s, "dan", "dan@agents.test", "Dan", [])
        dan = Browser(web.base)
        assert dan.get(login_link(desk, "dan")).status == 200
        assert dan.get(f"/agent/ticket/{number}").status == 404
        assert number not in dan.get("/agent/search?q=streifen").body

        # rotating the secret ends the session at once
        with db.transaction(desk.p.sessions) as s:
            agents.rotate_secret(s, "alice")
        assert web.get("/agent").status == 403
        assert web.get(url).status == 403  # and the login link with it


def test_metrics(desk: Desk) -> None:
    config = desk.p.config
    with running(config) as daemon:
        client = RawLMTP(daemon.config.lmtp.port)
        client.cmd("LHLO test")
        rcpt, replies = client.send(
            "a@customer.test", [HOT, "nobody@example.com"], mail("Metric me", "count")
        )
        client.close()
        assert rcpt[1].startswith("550") and replies[0].startswith("250")
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        text = web.get("/metrics")
        assert text.status == 200
        assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = text.body
        assert 'otrs_mailgate_mails_total{outcome="accepted"} 1.0' in body
        assert 'otrs_mailgate_mails_total{outcome="rejected"} 1.0' in body
        assert 'otrs_mailgate_mails_total{outcome="tempfailed"} 0.0' in body
        assert "otrs_mailgate_ingest_seconds_count 1.0" in body
        assert re.search(r'otrs_mailgate_outbox_rows\{status="(queued|sending)"\} [1-9]', body)
        assert "otrs_mailgate_escalations_fired_total 0.0" in body
        assert 'otrs_mailgate_outbox_mails_total{result="sent"}' in body
        daemon.config.web.metrics_from = ["10.0.0.0/8"]
        assert web.get("/metrics").status == 403


def test_agent_link_cli_and_its_errors(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    assert cli(cfg, "init").returncode == 0
    assert cli(cfg, "agent", "add", "alice", "alice@agents.test").returncode == 0
    ok = cli(cfg, "agent", "link", "alice")
    assert ok.returncode == 0, ok.stderr
    assert b"login link for alice queued to alice@agents.test (works until" in ok.stdout
    p = Pipeline(make_config(db_url))
    [mailed] = outbox_mails(p)
    assert str(mailed["To"]) == "alice@agents.test"
    assert "/agent/login/" in link_in(mailed) and mailed["Auto-Submitted"] == "auto-generated"
    missing = cli(cfg, "agent", "link", "nobody")
    assert missing.returncode == 1 and b"no agent 'nobody'" in missing.stderr
    assert cli(cfg, "agent", "disable", "alice").returncode == 0
    disabled = cli(cfg, "agent", "link", "alice")
    assert disabled.returncode == 1 and b"agent alice is disabled" in disabled.stderr
    assert len(outbox_mails(p)) == 1  # the refused requests queued nothing
    p.engine.dispose()


def test_overview_counts_overdue_and_lists_what_is_due_soonest(db_url: str) -> None:
    always = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    config = make_config(
        db_url,
        calendar=[{"name": "always", "hours": always}],
        sla=[{"name": "std", "queues": ["Hotline", "Support-DE"], "calendar": "always",
              "first_response": 60}],
    )  # fmt: skip
    p = Pipeline(config)
    p.ensure_queues()
    made = [p.deliver_one(mail(f"Case {i}"), HOT).ticket_number for i in range(3)]
    other = p.deliver_one(mail("Elsewhere"), "support@example.de").ticket_number
    now = dt.datetime.now(dt.UTC)
    with db.transaction(p.sessions) as s:
        for number, minutes in zip([*made, other], (-30, 45, 10, -90), strict=True):
            s.execute(
                update(Ticket)
                .where(Ticket.number == number)
                .values(first_response_due=now + dt.timedelta(minutes=minutes))
            )
        s.execute(update(Ticket).where(Ticket.number == made[1]).values(state="closed",
                  first_response_due=None))  # fmt: skip
        alice = agents.add(s, "alice", "alice@agents.test", "Alice", [])
        agents.grant(s, p.queue_id("Hotline"), "alice", "ro")
    with p.engine.connect() as conn:
        queues = views.visible_queues(conn, alice)
        o = views.overview(conn, alice, queues, now)
    assert [(q["name"], q["new"], q["overdue"]) for q in o["queues"]] == [("Hotline", 2, 1)]
    assert [(t["number"], t["overdue"]) for t in o["escalating"]] == [
        (made[0], True),
        (made[2], False),
    ]  # the closed one and the other queue's are not listed
    p.engine.dispose()
