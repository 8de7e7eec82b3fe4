"""Through a real Postfix: swaks -> smtpd -> LMTP -> ticket -> ack -> Postfix -> Maildir.

Skipped off CI when Postfix or swaks is missing; under CI=true it must run.
"""

from __future__ import annotations

import email
import json
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from pathlib import Path

import dkim
import pytest
from sqlalchemy import create_engine, select

from otrs_mailgate.admin import postfix
from otrs_mailgate.config.schema import load
from otrs_mailgate.outbound.outbox import dkim_keygen
from otrs_mailgate.store.models import Article, RawMessage, Ticket

from agent_helpers import SigningDomain
from cli_helpers import ROOT, cli
from helpers import ALWAYS_TOML, TEST_DNS, need
from lmtp_helpers import free_port, start
from postfix_helpers import Instance, instance, require_postfix, wait_for
from spam_helpers import local_dns

HOT = "hotline@example.com"


def daemon_config(
    db_url: str,
    lmtp_port: int,
    *,
    system: str = "",
    smtp: str = "",
    more: str = "",
    milter_port: int = 0,
) -> str:
    """The daemon's config for these tests; PORT stands for Postfix's SMTP port, known only
    once the instance runs (until then 25, which the config needs to load)."""
    if "dns_servers" not in system and TEST_DNS:
        system += f"\ndns_servers = {json.dumps(TEST_DNS)}"
    return f"""
[system]
domain = "mailgate.test"
{system}
[database]
url = "{db_url}"
[lmtp]
port = {lmtp_port}
[milter]
port = {milter_port or free_port()}
[web]
port = {free_port()}
[smtp]
port = PORT
{smtp}
{more}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
acknowledge = "always"
"""


def test_postfix_files_match_postfix_config(tmp_path: Path) -> None:
    config = load(ROOT / "otrs-mailgate.toml.example")
    copies = ROOT / "postfix"
    assert (copies / "otrs-mailgate-main.cf").read_text() == postfix.main_cf(config)
    assert (copies / "otrs-mailgate-transport").read_text() == postfix.transport(config)
    assert (copies / "otrs-mailgate-recipients").read_text() == postfix.recipients(config)
    proc = cli(ROOT / "otrs-mailgate.toml.example", "postfix-config")
    assert proc.returncode == 0
    assert b"transport_maps = hash:/etc/postfix/otrs-mailgate-transport" in proc.stdout
    assert b"hotline@example.com\tlmtp:inet:127.0.0.1:8024" in proc.stdout
    assert (
        b"smtpd_milters = { inet:127.0.0.1:8025, protocol=6, default_action=tempfail" in proc.stdout
    )


def test_postfix_config_write_names_its_maps_and_never_overwrites(tmp_path: Path) -> None:
    """Issue 27: --write wrote `main.cf` (over a site's own, in /etc/postfix) and maps whose
    names the lines did not use.  Now: a snippet, maps named as the lines name them, and
    a changed file is never replaced without --force (the diff is shown)."""
    example = ROOT / "otrs-mailgate.toml.example"
    site_main = tmp_path / "main.cf"
    site_main.write_text("myhostname = mx.site.example\n")
    first = cli(example, "postfix-config", "--write", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert site_main.read_text() == "myhostname = mx.site.example\n"  # never touched
    snippet = (tmp_path / "otrs-mailgate-main.cf").read_text()
    assert f"transport_maps = hash:{tmp_path}/otrs-mailgate-transport" in snippet
    assert f"relay_recipient_maps = hash:{tmp_path}/otrs-mailgate-recipients" in snippet
    assert (tmp_path / "otrs-mailgate-transport").exists()
    assert (tmp_path / "otrs-mailgate-recipients").exists()
    assert b"postmap " in first.stdout
    again = cli(example, "postfix-config", "--write", str(tmp_path))
    assert again.returncode == 0 and b"unchanged" in again.stdout
    edited = tmp_path / "otrs-mailgate-transport"
    edited.write_text("# the admin's own line\n" + edited.read_text())
    refused = cli(example, "postfix-config", "--write", str(tmp_path))
    assert refused.returncode == 1
    assert b"-# the admin's own line" in refused.stderr and b"nothing was written" in refused.stderr
    assert edited.read_text().startswith("# the admin's own line")
    forced = cli(example, "postfix-config", "--write", str(tmp_path), "--force")
    assert forced.returncode == 0 and not edited.read_text().startswith("# the admin")


def test_postfix_config_keeps_what_the_site_has(tmp_path: Path) -> None:
    """A Postfix that already has its own maps, relay domains and milters: ours are added
    to them (postconf -h), never put in their place."""
    require_postfix()
    example = ROOT / "otrs-mailgate.toml.example"
    (tmp_path / "main.cf").write_text(
        "transport_maps = hash:/etc/postfix/transport\n"
        "relay_domains = relay.site.example\n"
        "smtpd_milters = inet:127.0.0.1:8891\n"
        "recipient_delimiter = -\n"
    )
    proc = cli(example, "postfix-config", "--write", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "otrs-mailgate-main.cf").read_text().splitlines()
    assert (
        f"transport_maps = hash:/etc/postfix/transport, hash:{tmp_path}/otrs-mailgate-transport"
        in lines
    )
    assert "relay_domains = relay.site.example, example.com, example.de" in lines
    assert any(
        line.startswith("smtpd_milters = inet:127.0.0.1:8891, { inet:127.0.0.1:8025,")
        for line in lines
    )
    assert "recipient_delimiter = -+" in lines
    # its relay domain took any recipient: the recipient map lists it whole, so it still
    # does (issue 32: a server that carries other mail)
    assert any(line.startswith("# your relay domains (relay.site.example)") for line in lines)
    recipients = (tmp_path / "otrs-mailgate-recipients").read_text().splitlines()
    assert "@relay.site.example\tOK" in recipients


def test_postfix_config_for_several_daemons() -> None:
    example = ROOT / "otrs-mailgate.toml.example"
    proc = cli(example, "postfix-config", "--lmtp", "inet:10.0.0.1:8024", "--lmtp",
               "unix:/run/otrs/lmtp")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        b"transport_maps = pipemap:{hash:/etc/postfix/otrs-mailgate-transport, "
        b"randmap:{lmtp:inet:10.0.0.1:8024, lmtp:unix:/run/otrs/lmtp}}\n"
    ) in proc.stdout
    assert b"hotline@example.com\tlmtp:inet:10.0.0.1:8024" in proc.stdout
    bad = cli(example, "postfix-config", "--lmtp", "10.0.0.1:8024")
    assert bad.returncode == 2
    assert b"Invalid value for --lmtp: '10.0.0.1:8024': use inet:HOST:PORT or unix:/PATH" in (
        bad.stderr
    )
    assert bad.stdout == b""  # nothing half printed


def _tickets(db_url: str) -> list[tuple[str, int]]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Ticket.number, Ticket.id)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _articles(db_url: str, ticket_id: int) -> list[str]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(Article.subject).where(Article.ticket_id == ticket_id).order_by(Article.id)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return list(rows)


def test_mail_through_postfix_end_to_end(tmp_path: Path, db_url: str) -> None:
    require_postfix()
    key = tmp_path / "dkim.key"
    record = dkim_keygen(key, "mg", "mailgate.test")
    lmtp_port = free_port()
    cfg_text = daemon_config(db_url, lmtp_port, more=f'[dkim]\nselector = "mg"\nkey_file = "{key}"')
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    with instance(load(cfg), ["alice@customer.test"]) as pf:
        cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            sent = pf.swaks(
                "--from",
                "alice@customer.test",
                "--to",
                HOT,
                "--header",
                "Subject: Printer on fire",
                "--header",
                "Message-Id: <first@customer.test>",
                "--body",
                "It burns.",
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            [(number, ticket_id)] = wait_for(lambda: _tickets(db_url), 60, "the ticket")
            ack_file = wait_for(
                lambda: list(pf.maildir("alice").glob("*")),
                60,
                "the acknowledgement in alice's Maildir",
            )[0]
            raw = ack_file.read_bytes()
            ack = email.message_from_bytes(raw, policy=policy.default)
            assert ack["Subject"] == f"[Ticket#{number}] Printer on fire"
            assert ack["In-Reply-To"] == "<first@customer.test>"
            assert ack["Auto-Submitted"] == "auto-replied"
            txt = "".join(record.split('"')[1::2]).encode()
            assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: txt), "DKIM does not verify"
            # the status page link in the acknowledgement opens the ticket in the daemon
            [link] = re.findall(r"http://127\.0\.0\.1:\d+/t/[a-z2-7]+", ack.get_content())
            with urllib.request.urlopen(link, timeout=30) as page:
                html = page.read().decode()
            assert f"Ticket {number}" in html and "It burns." in html

            reply = pf.swaks(
                "--from",
                "alice@customer.test",
                "--to",
                HOT,
                "--header",
                f"Subject: Re: {ack['Subject']}",
                "--header",
                f"In-Reply-To: {ack['Message-ID']}",
                "--body",
                "Still burning.",
            )
            assert reply.returncode == 0
            wait_for(lambda: len(_articles(db_url, ticket_id)) == 2, 60, "the follow-up")
            assert len(_tickets(db_url)) == 1

            unknown = pf.swaks("--from", "alice@customer.test", "--to", "nobody@example.com")
            assert unknown.returncode != 0
            assert re.search(r"<\*\* 550 5\.1\.1 <nobody@example\.com>", unknown.stdout), (
                unknown.stdout
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        assert "status=sent (250 2.0.0" in pf.log()  # Postfix's own word for the LMTP delivery


def _stored_ids(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        ids = list(conn.execute(select(Article.message_id)).scalars())
    engine.dispose()
    return ids


def test_two_daemons_on_one_postgresql_share_the_mail_behind_one_postfix(
    tmp_path: Path, pg_url: str
) -> None:
    """postfix-config --lmtp twice: Postfix's randmap spreads 40 customers' mail over two
    `serve` processes; every mail stored once, one ticket number each, one ack each.  Then
    one daemon stops and 10 more mails all reach the other."""
    require_postfix()
    ports = [free_port(), free_port()]
    texts = [daemon_config(pg_url, port) for port in ports]
    cfgs = [tmp_path / f"d{i}.toml" for i in range(2)]
    for cfg, text in zip(cfgs, texts, strict=True):
        cfg.write_text(text.replace("PORT", "25"))
    mails = []
    for i in range(50):
        path = tmp_path / f"{i}.eml"
        path.write_text(
            f"From: <c{i}@customer.test>\nTo: {HOT}\nSubject: Case {i}\n"
            f"Message-ID: <case-{i}@customer.test>\n\nHelp {i}.\n"
        )
        mails.append(path)
    lmtp = [f"inet:127.0.0.1:{port}" for port in ports]
    with instance(load(cfgs[0]), ["@customer.test"], lmtp=lmtp) as pf:
        for cfg, text in zip(cfgs, texts, strict=True):
            cfg.write_text(text.replace("PORT", str(pf.port)))
        daemons = [start(cfg, port) for cfg, port in zip(cfgs, ports, strict=True)]
        try:
            pf.send_files(mails[:40], HOT)
            wait_for(lambda: len(_stored_ids(pg_url)) >= 40, 120, "the mail stored")
            shares = [cfg.with_suffix(".log").read_text().count(" status=250 ") for cfg in cfgs]
            # The second daemon stops: what the randmap still gives it waits in Postfix's
            # queue and goes to the first on a later try.
            daemons[1].send_signal(signal.SIGTERM)
            assert daemons[1].wait(30) == 0
            pf.send_files(mails[40:], HOT)
            wait_for(lambda: len(_stored_ids(pg_url)) >= 50, 120, "the mail stored")
            box = pf.maildir("customer.test")
            wait_for(lambda: len(list(box.glob("*"))) >= 50, 120, "the acknowledgements")
            pf.wait_queue_empty()
        finally:
            for daemon in daemons:
                daemon.send_signal(signal.SIGTERM)
            for daemon in daemons:
                assert daemon.wait(30) == 0
        acks = pf.inbox("customer.test")
        log = pf.log()
    assert sum(shares) == 40 and min(shares) > 0, shares  # both took mail (1 - 2**-39)
    assert sorted(_stored_ids(pg_url)) == sorted(f"case-{i}@customer.test" for i in range(50))
    numbers = [number for number, _ in _tickets(pg_url)]
    assert len(numbers) == len(set(numbers)) == 50
    assert sorted(str(a["In-Reply-To"]) for a in acks) == sorted(
        f"<case-{i}@customer.test>" for i in range(50)
    )
    assert "status=bounced" not in log
    print(f"deliveries per daemon {shares}; deferred while one was down: {log.count('deferred')}")


def test_kill_9_twice_under_smtp_source_load(tmp_path: Path, db_url: str) -> None:
    """2,000 mails via Postfix while the daemon is killed twice: each stored exactly once."""
    require_postfix()
    total = 2000
    lmtp_port = free_port()
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(f"""
[database]
url = "{db_url}"
[lmtp]
port = {lmtp_port}
[milter]
# This test is about LMTP: a milter dying with each kill -9 would tempfail smtp-source.
enabled = false
[web]
port = {free_port()}
[smtp]
port = {free_port()}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
acknowledge = false
""")
    with instance(load(cfg), []) as pf:
        daemon = start(cfg, lmtp_port)
        source = subprocess.Popen(
            [
                "smtp-source",
                "-s",
                "10",
                "-m",
                str(total),
                "-l",
                "1024",
                "-f",
                "load@customer.test",
                "-t",
                HOT,
                f"127.0.0.1:{pf.port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        kills = 0
        try:
            for _ in range(2):
                goal = (kills + 1) * 150
                wait_for(lambda goal=goal: len(_stored_ids(db_url)) > goal, 120, "progress")
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                kills += 1
                daemon = start(cfg, lmtp_port)
            assert source.wait(300) == 0, source.stdout.read()
            pf.wait_queue_empty(240)
        finally:  # never leave a daemon behind to hold ports later tests are given
            source.kill()
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        log = pf.log()
    accepted = set(re.findall(r"cleanup\[\d+\]: \w+: message-id=<([^>]+)>", log))
    ids = _stored_ids(db_url)
    assert len(accepted) == total, "Postfix did not accept every mail smtp-source sent"
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert set(ids) == accepted, "a message Postfix accepted was not stored"
    assert "status=bounced" not in log
    assert kills == 2


@contextmanager
def alice_desk(
    tmp_path: Path, db_url: str, more: str = "", system: str = ""
) -> Iterator[tuple[Instance, SigningDomain, Path]]:
    """Postfix with Maildirs for the customer and agent alice (rw on Hotline, DKIM key
    pinned), and `serve` delivering to it; yields (postfix, alice's signer, config)."""
    require_postfix()
    signer = SigningDomain("agents.test", "desk")
    keys = tmp_path / "agent-keys"
    keys.write_text(f"desk._domainkey.agents.test {signer.txt.decode()}\n")
    lmtp_port = free_port()
    cfg_text = daemon_config(
        db_url, lmtp_port, system=system, more=f'[agents]\ndkim_keys = "{keys}"\n' + more
    )
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    for args in (
        ("agent", "add", "alice", "alice@agents.test"),
        ("queue", "grant", "Hotline", "alice", "rw"),
    ):
        assert cli(cfg, *args).returncode == 0
    with instance(load(cfg), ["cus@customer.test", "alice@agents.test"]) as pf:
        cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            yield pf, signer, cfg
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)


def test_agent_works_a_ticket_by_mail_through_postfix(tmp_path: Path, db_url: str) -> None:
    """Customer mail -> notification in the agent's Maildir -> the agent answers it with a
    DKIM-signed mail carrying `close` -> the customer gets the answer, the agent a transcript."""
    import smtplib

    from agent_helpers import agent_mail

    with alice_desk(tmp_path, db_url) as (pf, signer, _):
        sent = pf.swaks(
            "--from",
            "cus@customer.test",
            "--to",
            HOT,
            "--header",
            "Subject: Printer on fire",
            "--body",
            "It burns.",
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [(number, ticket_id)] = wait_for(lambda: _tickets(db_url), 60, "the ticket")
        note_file = wait_for(lambda: list(pf.maildir("alice").glob("*")), 60, "the notification")[0]
        note = email.message_from_bytes(note_file.read_bytes(), policy=policy.default)
        assert str(note["Subject"]).strip() == f"[Ticket#{number}] Printer on fire"
        reply_to = str(note["Reply-To"])
        raw = signer.sign(
            agent_mail(
                "alice@agents.test",
                reply_to,
                f"Re: [Ticket#{number} close] Printer on fire",
                "Replaced the fuser. It works again.",
            )
        )
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp:
            smtp.sendmail("alice@agents.test", [reply_to], raw)
        wait_for(
            lambda: len(list(pf.maildir("cus").glob("*"))) == 2,
            60,
            "the answer to the customer",
        )
        wait_for(lambda: len(list(pf.maildir("alice").glob("*"))) == 2, 60, "the transcript")
        [answer] = [m for m in pf.inbox("cus") if "Replaced the fuser" in m.get_content()]
        assert str(answer["Subject"]).strip() == f"[Ticket#{number}] Printer on fire"
        assert "hotline+" not in answer.as_string()
        [transcript] = [
            m for m in pf.inbox("alice") if str(m["Subject"]).strip().startswith("Processed:")
        ]
        assert "> close\n  closed" in transcript.get_content().replace("\r\n", "\n")
        engine = create_engine(db_url)
        with engine.connect() as conn:
            state = conn.execute(select(Ticket.state).where(Ticket.id == ticket_id)).scalar()
        engine.dispose()
        assert state == "closed"


def test_escalation_reaches_the_agent_through_postfix_and_its_reply_works(
    tmp_path: Path, db_url: str
) -> None:
    """Customer mail -> ticket; `escalations check` from cron a minute and more later ->
    level 1 in the agent's Maildir -> the agent answers it with `take` -> transcript."""
    import datetime as dt
    import smtplib

    from agent_helpers import agent_mail

    sla = (
        ALWAYS_TOML
        + '[[sla]]\nname = "fast"\nqueues = ["Hotline"]\ncalendar = "always"\n'
        + "first_response = 1\nnotify_before = 0\n"
    )
    with alice_desk(tmp_path, db_url, sla) as (pf, signer, cfg):
        sent = pf.swaks("--from", "cus@customer.test", "--to", HOT, "--header", "Subject: Down")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [(number, ticket_id)] = wait_for(lambda: _tickets(db_url), 60, "the ticket")
        wait_for(lambda: pf.inbox("alice"), 60, "the notification")
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
        check = cli(cfg, "escalations", "check", "--now", later)
        assert check.stdout.decode().startswith("1 escalation(s) fired"), check
        escalated = wait_for(
            lambda: [m for m in pf.inbox("alice") if "Escalation 1" in str(m["Subject"])],
            60,
            "the escalation",
        )[0]
        assert str(escalated["Subject"]).strip() == (
            f"[Ticket#{number}] Escalation 1 (first response): Down"
        )
        assert escalated["Auto-Submitted"] == "auto-generated"
        raw = signer.sign(
            agent_mail(
                "alice@agents.test",
                str(escalated["Reply-To"]),
                f"Re: [Ticket#{number} take note] Escalation 1 (first response): Down",
                "Mine.",
            )
        )
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp:
            smtp.sendmail("alice@agents.test", [str(escalated["Reply-To"])], raw)
        wait_for(
            lambda: [m for m in pf.inbox("alice") if str(m["Subject"]).startswith("Processed")],
            60,
            "the transcript",
        )
        engine = create_engine(db_url)
        with engine.connect() as conn:
            owner = conn.execute(select(Ticket.owner_id).where(Ticket.id == ticket_id))
            assert owner.scalar() is not None
        engine.dispose()


def _raw_messages(db_url: str) -> list[bytes]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        found = [
            bytes(r)
            for r in conn.execute(select(RawMessage.data).order_by(RawMessage.id)).scalars()
        ]
    engine.dispose()
    return found


def test_milter_through_postfix(tmp_path: Path, db_url: str) -> None:
    """swaks -> Postfix smtpd -> our milter (in serve): the client sees each refusal's reply;
    what passes reaches the daemon with our Authentication-Results, forged ones gone; with
    the milter down Postfix answers 451 4.7.1 (milter_default_action = tempfail)."""
    sales = (
        # after [agents] dkim_keys in alice_desk: this line belongs to [agents] too
        'authserv_id = "mx.mailgate.test"\n'
        '[[queue]]\nname = "Sales"\naddresses = ["sales@example.com"]\n'
        'new_tickets = "reject"\nreject_text = "Sales takes no new requests by mail."\n'
    )
    # SPF and DMARC are looked up in a DNS server of the test's own that knows no name
    with (
        local_dns({}) as dns,
        alice_desk(tmp_path, db_url, sales, system=f'dns_servers = ["{dns}"]') as (pf, _, cfg),
    ):
        loop = pf.swaks("--to", HOT, "--header", "X-Loop: hotline@example.com")
        assert "<** 550 5.7.1 mail loop" in loop.stdout, loop.stdout
        stranger = pf.swaks("--from", "new@customer.test", "--to", "sales@example.com")
        assert "<** 550 5.7.1 Sales takes no new requests by mail." in stranger.stdout
        forged_token = "hotline+" + "a" * 44 + "@example.com"
        token = pf.swaks("--from", "alice@agents.test", "--to", forged_token)
        assert "<** 550 5.7.1 this reply address does not take this mail" in token.stdout
        good = pf.swaks(
            "--from",
            "cus@customer.test",
            "--to",
            HOT,
            "--header",
            "Subject: Printer",
            "--header",
            "Authentication-Results: mx.mailgate.test; dkim=pass header.d=customer.test",
        )
        assert good.returncode == 0, good.stdout
        [(number, _)] = wait_for(lambda: _tickets(db_url), 60, "the ticket")
        followup = pf.swaks(
            "--from",
            "cus@customer.test",
            "--to",
            HOT,
            "--header",
            f"Subject: Re: [Ticket#{number}]",
        )
        assert followup.returncode == 0, followup.stdout
        raws = wait_for(lambda: _raw_messages(db_url)[1:], 60, "the follow-up")
        first = email.message_from_bytes(_raw_messages(db_url)[0], policy=policy.default)
        # DKIM first, then SPF and DMARC as our milter computed them (issue 28); the
        # forged dkim=pass the sender wrote is gone
        assert first.get_all("Authentication-Results") == [
            "mx.mailgate.test; dkim=none; spf=none smtp.mailfrom=customer.test; "
            "dmarc=none header.from=customer.test"
        ]
        second = email.message_from_bytes(raws[0], policy=policy.default)
        assert second["X-OTRS-Mailgate-Ticket"] == number
        assert len(_tickets(db_url)) == 1  # nothing refused above was stored
    # serve (and its milter) stopped, Postfix still running: the sender is told to retry
    with instance(load(cfg), []) as pf2:
        down = pf2.swaks("--to", HOT)
        assert "<** 451 4.7.1" in down.stdout, down.stdout


ROBOT = """#!/usr/bin/python3
# A naive auto-responder: answers every mail, ignores Auto-Submitted and friends.
import smtplib, sys, time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
here = sys.argv[0].rsplit("/", 1)[0]
sys.stdin.buffer.read()
sender = sys.argv[1]
if sender:
    port = int(open(here + "/port").read())
    msg = EmailMessage()
    msg["From"] = "robot@loop.test"
    msg["To"] = sender
    msg["Subject"] = "I am away"
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="loop.test")
    msg.set_content("I am away until Monday.")
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("robot@loop.test", [sender], msg.as_bytes())
    with open(here + "/answered", "a") as fh:
        fh.write(sender + "\\n")
"""


def test_two_auto_responders_stop_within_the_loop_limit(tmp_path: Path, db_url: str) -> None:
    """Our acknowledgements against a responder that answers everything: the loop limit
    (3 here) ends it; every mail is stored, no storm."""
    import shutil
    import tempfile
    import time

    require_postfix()
    robot_dir = Path(tempfile.mkdtemp(prefix="otrs-mailgate-robot-", dir="/tmp"))
    robot_dir.chmod(0o777)
    (robot_dir / "robot.py").write_text(ROBOT)
    (robot_dir / "robot.py").chmod(0o755)
    lmtp_port = free_port()
    cfg_text = daemon_config(
        db_url, lmtp_port, system="auto_response_limit = 3", smtp="backoff_seconds = 1"
    )
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    master = (
        "robot unix - n n - - pipe flags=Fq. user=nobody "
        f"argv=/usr/bin/python3 {robot_dir}/robot.py ${{sender}}\n"
    )
    with instance(load(cfg), [], extra_transport="loop.test robot:\n", extra_master=master) as pf:
        (robot_dir / "port").write_text(str(pf.port))
        cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            sent = pf.swaks("--from", "robot@loop.test", "--to", HOT, "--header", "Subject: Hi")
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_for(lambda: len(_tickets(db_url)) == 4, 120, "four tickets")
            answered = robot_dir / "answered"
            wait_for(
                lambda: answered.exists() and len(answered.read_text().split()) == 3,
                60,
                "3 answers",
            )
            time.sleep(8)  # long enough for another round trip, were there one
            pf.wait_queue_empty()
            assert len(_tickets(db_url)) == 4
            assert len(answered.read_text().split()) == 3  # the robot got 3 acks, no more
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            shutil.rmtree(robot_dir, ignore_errors=True)
        log = daemon.log_path.read_text()  # type: ignore[attr-defined]
    engine = create_engine(db_url)
    with engine.connect() as conn:
        from otrs_mailgate.store.models import History

        held = (
            conn.execute(select(History.detail).where(History.type == "AutoResponseSuppressed"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert len(held) == 1 and "loop limit: 3 automatic answers to robot@loop.test" in held[0], log


def test_postfix_bounce_of_an_acknowledgement_lands_on_the_ticket(
    tmp_path: Path, db_url: str
) -> None:
    """A customer address that does not exist: Postfix accepts our acknowledgement, cannot
    deliver it, and its delivery status notification comes back to the queue address."""
    require_postfix()
    lmtp_port = free_port()
    cfg_text = daemon_config(db_url, lmtp_port)
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    # accept mail for unknown users at SMTP time, so that the failure becomes a bounce
    with instance(load(cfg), ["cus@customer.test"], "smtpd_reject_unlisted_recipient = no") as pf:
        cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            sent = pf.swaks(
                "--from", "ghost@customer.test", "--to", HOT, "--header", "Subject: Hello"
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_for(lambda: _tickets(db_url), 60, "the ticket")
            wait_for(lambda: _history(db_url, "Bounce"), 90, "the bounce on the ticket")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    [detail] = _history(db_url, "Bounce")
    assert '"recipient": "ghost@customer.test"' in detail and '"status": "5.1.1"' in detail
    assert len(_tickets(db_url)) == 1  # the bounce made no ticket
    assert (
        _history(db_url, "AutoResponseQueued") and len(_history(db_url, "AutoResponseQueued")) == 1
    )


def _history(db_url: str, type_: str) -> list[str]:
    from otrs_mailgate.store.models import History

    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(History.detail).where(History.type == type_)).scalars().all()
    engine.dispose()
    return list(rows)


def test_postfix_pipe_transport_hands_mail_to_the_daemon_unchanged(
    tmp_path: Path, db_url: str
) -> None:
    """master.cf's pipe transport as postfix/master.cf has it (flags=Rq, an unprivileged
    user): Postfix's pipe(8) gives LF lines of any length; the pipe client forwards them
    to the daemon over LMTP. Long lines, dot lines and a mail over 1 MB arrive as sent
    (in CRLF form); with the daemon down the client says 75 and Postfix keeps the mail
    until it is back: nothing bounces."""
    import shutil
    import tempfile

    from otrs_mailgate.mail.wire import canonical

    require_postfix()
    python = Path("/usr/bin/python3")  # nobody may not enter /root, where the venv's is
    need(python.exists(), "no /usr/bin/python3 for the pipe user (Debian package python3)")
    # The pipe runs as nobody: the client's code and config where nobody can read them.
    # It needs the standard library only while the daemon answers.
    home = Path(tempfile.mkdtemp(prefix="otrs-mailgate-pipe-", dir="/tmp"))
    home.chmod(0o755)
    shutil.copytree(ROOT / "otrs_mailgate", home / "otrs_mailgate")
    shutil.copytree(ROOT / "bin", home / "bin")
    for path in home.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.parent.name == "bin" else 0o644)
    lmtp_port = free_port()
    # No milter in front: it is part of the daemon, which this test stops on purpose.
    cfg_text = daemon_config(db_url, lmtp_port).replace("[milter]\n", "[milter]\nenabled = false\n")
    cfg = home / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    cfg.chmod(0o644)
    env = f"OTRS_MAILGATE_CONFIG={cfg} OTRS_MAILGATE_PYTHON={python} PYTHONPATH={home}"
    main = (
        "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE "
        f"POSTLOG_HOSTNAME {env}\n"
        "export_environment = TZ MAIL_CONFIG LANG OTRS_MAILGATE_CONFIG OTRS_MAILGATE_PYTHON "
        "PYTHONPATH\n"
    )
    master = (
        "otrs-mailgate unix - n n - 10 pipe flags=Rq user=nobody "
        f"argv={home}/bin/otrs-mailgate-pipe ${{recipient}} ${{sender}}\n"
    )
    bodies = {
        "long lines": b"x" * 5000 + b"\n" + b"y" * 70_000 + b"\nend\n",
        "dots": b".\n..\n. leading dot\n...three\n.\nend\n",
        "big": (b"0123456789abcdef" * 62 + b"\n") * 1300,
        "plain": "Håvard wrote: the printer is on fire.\n".encode(),
    }

    def send(pf: Instance, subject: str, body: bytes) -> None:
        data = tmp_path / f"{subject}.eml"
        data.write_bytes(
            f"From: Havard <havard@customer.test>\nTo: {HOT}\nSubject: {subject}\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n".encode()
            + body.removesuffix(b"\n")  # swaks ends the data with a line end of its own
        )
        sent = pf.swaks("--from", "havard@customer.test", "--to", HOT, "--data", f"@{data}")
        assert sent.returncode == 0, sent.stdout + sent.stderr

    try:
        with instance(load(cfg), [], main, transport=f"{HOT}\totrs-mailgate:\n",
                      extra_master=master) as pf:  # fmt: skip
            cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
            send(pf, "while the daemon is down", b"kept by Postfix meanwhile\n")
            try:
                wait_for(lambda: "status=deferred" in pf.log(), 60, "a deferral")
            except TimeoutError:
                raise AssertionError(pf.log()[-4000:]) from None
            assert "status=bounced" not in pf.log()
            daemon = start(cfg, lmtp_port)
            try:
                for subject, body in bodies.items():
                    send(pf, subject, body)
                pf.postfix("flush")
                wait_for(lambda: len(_tickets(db_url)) == 5, 120, "five tickets")
                pf.wait_queue_empty()
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
            log = pf.log()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert "status=bounced" not in log and log.count("relay=otrs-mailgate") >= 5, log[-3000:]
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Article.subject, RawMessage.data).join(
                RawMessage, RawMessage.id == Article.raw_id
            )
        ).all()
    engine.dispose()
    stored = {subject: bytes(data) for subject, data in rows}
    assert set(stored) == {*bodies, "while the daemon is down"}
    for subject, body in bodies.items():
        raw = stored[subject]
        assert raw.startswith(b"Return-Path: <havard@customer.test>\r\n"), raw[:200]
        assert raw.split(b"\r\n\r\n", 1)[1] == canonical(body), subject


def test_issue_19_attacks_through_postfix_and_the_milter(tmp_path: Path, db_url: str) -> None:
    """Each form Postfix accepts of a reply address gets the milter's checks (item 1):
    an unsigned `close` with a forged Authentication-Results (our authserv-id with a
    comment glued on, item 4) is refused with the one generic text (item 3) and closes
    nothing; a second Subject above alice's signed mail is refused (item 2); a plus
    address that is no token makes a ticket the agent hears of (item 9)."""
    import smtplib

    from agent_helpers import agent_mail

    ar = 'authserv_id = "mx.mailgate.test"\n'
    with alice_desk(tmp_path, db_url, ar) as (pf, signer, _):
        sent = pf.swaks("--from", "cus@customer.test", "--to", HOT, "--header", "Subject: Fire")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [(number, ticket_id)] = wait_for(lambda: _tickets(db_url), 60, "the ticket")
        note = wait_for(lambda: pf.inbox("alice"), 60, "the notification")[0]
        reply_to = str(note["Reply-To"])
        local, _, domain = reply_to.partition("@")
        glued = "Authentication-Results: mx.mailgate.test(x); dkim=pass header.d=agents.test"
        for form in (f'"{local}"@{domain}', f"{reply_to}.", f"@relay.example:{reply_to}"):
            forged = pf.swaks(
                "--from", "alice@agents.test", "--to", form, "--header",
                f"Subject: Re: [Ticket#{number} close] Fire", "--header", glued,
                "--header", "From: alice@agents.test",
            )  # fmt: skip
            assert "<** 550 5.7.1 this reply address does not take this mail" in forged.stdout, (
                form,
                forged.stdout,
            )
        old = signer.sign(
            agent_mail("alice@agents.test", reply_to, f"Re: [Ticket#{number}] Fire", "Looking.")
        )
        doubled = f"Subject: Re: [Ticket#{number} close] Fire\r\n".encode() + old
        with (
            smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            smtp.sendmail("alice@agents.test", [reply_to], doubled)
        assert refused.value.smtp_code == 550
        plus = pf.swaks(
            "--from", "new@customer.test", "--to", "hotline+sales@example.com",
            "--header", "Subject: Via a plus address", "--header", glued,
        )  # fmt: skip
        assert plus.returncode == 0, plus.stdout
        wait_for(lambda: len(_tickets(db_url)) == 2, 60, "the plus address's ticket")
        wait_for(
            lambda: [m for m in pf.inbox("alice") if "plus address" in str(m["Subject"])],
            60,
            "alice told of the ticket made at a plus address",
        )
        stored = _raw_messages(db_url)[-1]
        assert b"mx.mailgate.test(x)" not in stored  # the glued A-R was deleted
        engine = create_engine(db_url)
        with engine.connect() as conn:
            state = conn.execute(select(Ticket.state).where(Ticket.id == ticket_id)).scalar()
        engine.dispose()
        assert state == "new", "nothing refused above may have closed the ticket"


def test_odd_and_international_customers_get_their_answer_through_postfix(
    tmp_path: Path, db_url: str
) -> None:
    """Issue 25, item 1, through a real Postfix with its default smtputf8_enable = yes: a
    customer whose From has a trailing dot and one with a non-ASCII address (sent with
    SMTPUTF8) both get their acknowledgement in their Maildir; the first is answered at
    the address without the dot, the second with SMTPUTF8 (its headers in UTF-8)."""
    import smtplib

    require_postfix()
    lmtp_port = free_port()
    cfg_text = daemon_config(db_url, lmtp_port)
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(cfg_text.replace("PORT", "25"))
    boxes = ["claudia.shu@customer.test", "@xn--exmple-cua.de"]
    with instance(load(cfg), boxes, smtputf8=True) as pf:
        cfg.write_text(cfg_text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        try:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp:
                smtp.sendmail(
                    "claudia.shu@customer.test",
                    [HOT],
                    b"From: Claudia <Claudia.Shu@customer.test.>\r\nTo: hotline@example.com\r\n"
                    b"Subject: Trailing dot\r\nMessage-ID: <dot@customer.test>\r\n\r\nHi.\r\n",
                )
                smtp.sendmail(
                    "jörg@exämple.de",
                    [HOT],
                    "From: Jörg <jörg@exämple.de>\r\nTo: hotline@example.com\r\n"
                    "Subject: Grüße\r\nMessage-ID: <idn@xn--exmple-cua.de>\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo.\r\n".encode(),
                    mail_options=["SMTPUTF8"],
                )
            wait_for(lambda: list(pf.maildir("claudia.shu").glob("*")), 60, "Claudia's answer")
            wait_for(lambda: list(pf.maildir("xn--exmple-cua.de").glob("*")), 60, "Jörg's")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        [dot] = [f.read_bytes() for f in pf.maildir("claudia.shu").glob("*")]
        [idn] = [f.read_bytes() for f in pf.maildir("xn--exmple-cua.de").glob("*")]
        log = pf.log()
    from otrs_mailgate.mail.parse import parse

    assert parse(dot).to == ["claudia.shu@customer.test"]
    answer = parse(idn)
    assert answer.to == ["jörg@xn--exmple-cua.de"] and answer.subject.endswith("Grüße")
    assert "jörg@xn--exmple-cua.de".encode() in idn  # raw UTF-8 (RFC 6532)
    assert "status=bounced" not in log
