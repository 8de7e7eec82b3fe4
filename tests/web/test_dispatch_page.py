"""The raw queue on the agents' overview page (issue 20): what waits to be dispatched."""

from __future__ import annotations

from pathlib import Path

from otrs_mailgate.config.schema import load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound import notify
from otrs_mailgate.store import db
from otrs_mailgate.tickets import agents

from cli_helpers import cli, write_config
from helpers import mail
from lmtp_helpers import running
from web_helpers import Browser

RAW = '\n[[queue]]\nname = "Raw"\naddresses = ["dispatch@example.com"]\n'


def test_the_overview_lists_what_waits_in_the_raw_queue(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, RAW)
    domain = 'domain = "mailgate.test"'
    cfg.write_text(cfg.read_text().replace(domain, f'{domain}\ncatch_all = "Raw"'))
    config = load(cfg)
    p = Pipeline(config)
    p.ensure_queues()
    with db.transaction(p.sessions) as s:
        agents.add(s, "alice", "alice@agents.test", "Alice", [])
        for queue in ("Raw", "Hotline"):
            agents.grant(s, p.queue_id(queue), "alice", "rw")
        _agent, url = notify.mail_login_link(s, config, "alice")
    stray = p.deliver_one(
        mail("Sent to an old address", sender="c@customer.test"), "old@example.com"
    )
    with running(config) as daemon:
        web = Browser(f"http://127.0.0.1:{daemon.config.web.port}")
        page = web.get(url)
        assert page.status == 200
        assert "To dispatch: Raw" in page.body and stray.ticket_number in page.body
        assert "(raw)" in page.body
        assert cli(cfg, "ticket", "move", stray.ticket_number, "Hotline").returncode == 0
        after = web.get("/agent")
    assert "To dispatch: Raw" in after.body and "Nothing waits." in after.body
    p.engine.dispose()
