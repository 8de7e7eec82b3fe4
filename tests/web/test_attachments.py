"""Attachments out (issue 20): the CLI writes them, the page offers them to agents with
access and to the customer on the signed link (downloads, a safe type, the same
signing rules), notifications name them with size and link, and an agent's answer by
mail carries its attachments to the customer."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.config.schema import load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound import notify
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Attachment, Ticket, utcnow
from otrs_mailgate.tickets import agents

from agent_helpers import Desk, SigningDomain
from cli_helpers import cli, write_config
from helpers import outbox_mails
from lmtp_helpers import free_port, running
from web_helpers import Browser, link_in, with_files

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
HOSTILE = b"<html><script>alert(1)</script></html>"


@pytest.fixture
def desk(pipeline: Pipeline) -> Desk:
    pipeline.config.web.port = free_port()
    return Desk(pipeline, SigningDomain())


def file_ids(desk: Desk) -> dict[str, int]:
    with desk.p.sessions() as s:
        return {a.filename: a.id for a in s.execute(select(Attachment)).scalars()}


def test_page_downloads_for_the_customer_and_agents_only(desk: Desk) -> None:
    raw = with_files(
        "Invoice", ("bill.pdf", "application/pdf", b"%PDF-1.4 bill"),
        ("page.html", "text/html", HOSTILE),
    )  # fmt: skip
    number = desk.p.deliver_one(raw, HOT).ticket_number
    other = desk.p.deliver_one(
        with_files("Other", ("secret.txt", "text/plain", b"not yours"), sender="o@x.test"), HOT
    ).ticket_number
    desk.command("bob", number, "note", "Internal.")  # an internal article, no file
    [ack] = [m for m in outbox_mails(desk.p) if m["To"] == CUSTOMER]
    url = link_in(ack)
    token = url.rsplit("/", 1)[1]
    ids = file_ids(desk)
    with db.transaction(desk.p.sessions) as s:
        _a, login = notify.mail_login_link(s, desk.p.config, "alice")
        agents.add(s, "dan", "dan@agents.test", "Dan", [])  # no grant anywhere
        _d, dan_login = notify.mail_login_link(s, desk.p.config, "dan")
    with running(desk.p.config) as daemon:
        base = f"http://127.0.0.1:{daemon.config.web.port}"
        web = Browser(base)
        page = web.get(url)
        assert f"/t/{token}/file/{ids['bill.pdf']}" in page.body and "bill.pdf" in page.body
        pdf = web.get(f"/t/{token}/file/{ids['bill.pdf']}")
        assert pdf.status == 200 and pdf.body.startswith("%PDF")
        assert pdf.headers["Content-Type"] == "application/pdf"
        assert pdf.headers["Content-Disposition"].startswith('attachment; filename="bill.pdf"')
        html = web.get(f"/t/{token}/file/{ids['page.html']}")
        assert html.headers["Content-Type"] == "application/octet-stream"  # never rendered
        assert "sandbox" in html.headers["Content-Security-Policy"]
        assert web.get(f"/t/{token}/file/{ids['secret.txt']}").status == 403  # not its ticket
        assert web.get(f"/t/{token[:-2]}aa/file/{ids['bill.pdf']}").status == 403  # forged
        assert web.get(f"/agent/ticket/{number}/file/{ids['bill.pdf']}").status == 403  # no login
        alice = Browser(base)
        assert alice.get(login).status == 200
        ticket = alice.get(f"/agent/ticket/{number}")
        assert f"/agent/ticket/{number}/file/{ids['bill.pdf']}" in ticket.body
        assert alice.get(f"/agent/ticket/{number}/file/{ids['bill.pdf']}").status == 200
        # an id of another ticket under this number is nobody's file
        assert alice.get(f"/agent/ticket/{number}/file/{ids['secret.txt']}").status == 404
        assert alice.get(f"/agent/ticket/{other}/file/{ids['secret.txt']}").status == 200
        dan = Browser(base)
        assert dan.get(dan_login).status == 200
        assert dan.get(f"/agent/ticket/{number}/file/{ids['bill.pdf']}").status == 404


def test_notifications_name_each_attachment_with_size_and_link(desk: Desk) -> None:
    raw = with_files("Scan", ("scan.png", "image/png", b"\x89PNG" + b"x" * 2000))
    number = desk.p.deliver_one(raw, HOT).ticket_number
    [note] = desk.to("alice@agents.test")
    text = note.get_content()
    [fid] = file_ids(desk).values()
    assert "Attachments:" in text
    assert re.search(
        rf"scan\.png \(2\.0 KB\): http://127\.0\.0\.1:\d+/agent/ticket/{number}/file/{fid}", text
    )


def test_an_agents_answer_carries_its_attachments_to_the_customer(desk: Desk) -> None:
    number = desk.p.deliver_one(with_files("Manual?"), HOT).ticket_number
    to = desk.reply_address("alice", number)
    msg = EmailMessage()
    msg["From"], msg["To"] = "alice@agents.test", to
    msg["Subject"] = f"Re: [Ticket#{number}] Manual?"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = "<answer-with-file@agents.test>"
    msg.set_content("The manual is attached.")
    msg.add_attachment(b"%PDF-1.4 manual", maintype="application", subtype="pdf",
                       filename="manual.pdf")  # fmt: skip
    desk.p.deliver_one(desk.domain.sign(msg.as_bytes()), to, "alice@agents.test")
    [answer] = [
        m
        for m in desk.to(CUSTOMER)
        if "manual is attached" in str(m.get_body(("plain",)).get_content())
    ]
    [part] = list(answer.iter_attachments())
    assert part.get_filename() == "manual.pdf" and part.get_content() == b"%PDF-1.4 manual"
    assert "hotline+" not in answer.as_string()


def test_ticket_attachment_on_the_command_line(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    p = Pipeline(load(cfg))
    raw = with_files("Logs", ("app.log", "text/plain", b"line 1\nline 2\n"))
    number = p.deliver_one(raw, HOT).ticket_number
    listed = cli(cfg, "ticket", "attachment", number)
    assert listed.returncode == 0 and b"app.log" in listed.stdout
    [entry] = json.loads(cli(cfg, "ticket", "attachment", number, "--json").stdout)
    out = tmp_path / "app.log"
    written = cli(cfg, "ticket", "attachment", number, str(entry["id"]), "-o", str(out))
    assert written.returncode == 0 and out.read_bytes() == b"line 1\nline 2\n"
    again = cli(cfg, "ticket", "attachment", number, str(entry["id"]), "-o", str(out))
    assert again.returncode == 1 and b"exists; give a new file" in again.stderr
    assert out.read_bytes() == b"line 1\nline 2\n"  # not overwritten
    raw_out = cli(cfg, "ticket", "attachment", number, str(entry["id"]))
    assert raw_out.stdout == b"line 1\nline 2\n"
    missing = cli(cfg, "ticket", "attachment", number, "999")
    assert missing.returncode == 1 and b"has no attachment 999" in missing.stderr
    nobody = cli(cfg, "ticket", "attachment", "2026010110000019")
    assert nobody.returncode == 1 and b"no ticket" in nobody.stderr
    with p.sessions() as s:
        assert s.execute(select(Ticket.state)).scalar() == "new"
    p.engine.dispose()
