"""A Postfix that carries other mail (issue 32): the hotline's address lives in a domain
the server already delivers to mailboxes, beside a relay domain of the site's.
postfix-config routes only the queue addresses to us and takes no domain over; the
site's mail flows with `serve` running and stopped, and the hotline's waits in Postfix's
queue while the daemon is down."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from sqlalchemy import create_engine, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.store.models import Ticket

from cli_helpers import cli, write_config
from lmtp_helpers import free_port, start
from postfix_helpers import instance, require_postfix, wait_for


class Relayed(Sink):
    def __init__(self) -> None:
        self.got: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.got += envelope.rcpt_tos
        return "250 OK"


def merge(postfix_dir: Path) -> None:
    """What an admin does with postfix-config's files (docs/getting-started.md)."""
    for line in (postfix_dir / "otrs-mailgate-main.cf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            subprocess.run(["postconf", "-c", str(postfix_dir), "-e", line], check=True)
    maps = [p for p in postfix_dir.glob("otrs-mailgate-*") if p.suffix not in (".cf", ".db")]
    subprocess.run(["postmap", "-c", str(postfix_dir), *map(str, maps)], check=True)


def titles(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Ticket.title).order_by(Ticket.id)).scalars().all()
    engine.dispose()
    return list(rows)


def test_a_server_that_carries_other_mail(tmp_path: Path) -> None:
    require_postfix()
    db_url = f"sqlite:///{tmp_path}/db.sqlite"
    relayed = Relayed()
    relay = Controller(relayed, hostname="127.0.0.1", port=free_port())
    relay.start()
    lmtp_port = free_port()
    cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=lmtp_port)
    try:
        site_boxes = ["someone@example.com", "customer@customer.test"]
        with instance(load(cfg), site_boxes, ours=False) as mx:
            etc = mx.config_dir
            # the site's own relay domain, with a transport map of its own
            (etc / "site-transport").write_text(f"relay.test smtp:[127.0.0.1]:{relay.port}\n")
            for line in ("relay_domains = relay.test",
                         f"transport_maps = texthash:{etc}/site-transport"):  # fmt: skip
                subprocess.run(["postconf", "-c", str(etc), "-e", line], check=True)
            cfg.write_text(cfg.read_text() + f"\n[smtp]\nport = {mx.port}\n")
            assert cli(cfg, "init").returncode == 0
            written = cli(cfg, "postfix-config", "--write", str(etc))
            assert written.returncode == 0, written.stderr
            assert (
                b"example.com: your Postfix serves it already (virtual_mailbox)" in written.stderr
            )
            merge(etc)
            mx.postfix("reload")
            conf = {
                k: subprocess.run(["postconf", "-c", str(etc), "-h", k], capture_output=True,
                                  text=True).stdout.strip()
                for k in ("relay_domains", "virtual_mailbox_maps", "transport_maps",
                          "smtpd_milters")
            }  # fmt: skip
            # example.com stays the site's (not a relay domain); example.de is new: ours
            assert conf["relay_domains"] == "relay.test, example.de"
            assert conf["virtual_mailbox_maps"].endswith("otrs-mailgate-recipients")
            assert conf["transport_maps"].startswith(f"texthash:{etc}/site-transport, hash:")
            assert "default_action=accept" in conf["smtpd_milters"]

            def send(to: str, subject: str) -> None:
                out = mx.swaks("--from", "customer@customer.test", "--to", to,
                               "--header", f"Subject: {subject}")  # fmt: skip
                assert out.returncode == 0, out.stdout + out.stderr

            daemon = start(cfg, lmtp_port)
            try:
                send("someone@example.com", "for an employee")
                send("hotline@example.com", "Printer on fire")
                send("x@relay.test", "relayed")
                send("support@example.de", "Drucker")
                wait_for(lambda: len(titles(db_url)) == 2, 60, "two tickets")
                wait_for(lambda: mx.inbox("someone"), 60, "the employee's mail")
                wait_for(lambda: "x@relay.test" in relayed.got, 60, "the relayed mail")
                assert titles(db_url) == ["Printer on fire", "Drucker"]
            finally:
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(30) == 0
            # serve is stopped: the site's mail does not wait on us; the hotline's waits
            send("someone@example.com", "while serve is down")
            send("x@relay.test", "relayed while serve is down")
            send("hotline@example.com", "Still on fire")
            wait_for(lambda: len(mx.inbox("someone")) == 2, 60, "the employee's second mail")
            wait_for(lambda: relayed.got.count("x@relay.test") == 2, 60, "the second relay")
            time.sleep(1)
            assert "Still on fire" not in titles(db_url)
            assert "status=deferred" in mx.log()  # Postfix keeps it for the daemon
            daemon = start(cfg, lmtp_port)
            try:
                subprocess.run(["postqueue", "-c", str(etc), "-f"], check=True)
                wait_for(lambda: "Still on fire" in titles(db_url), 60, "the kept hotline mail")
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
            assert "status=bounced" not in mx.log()
    finally:
        relay.stop()
