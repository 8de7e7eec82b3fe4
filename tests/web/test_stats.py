"""`otrs-mailgate stats`: created / closed / open per period, times, agents, senders;
numbers checked by hand."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from sqlalchemy import func, select, update

from otrs_mailgate.config import schema as config_mod
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Ticket, TimeEntry
from otrs_mailgate.tickets import agents
from otrs_mailgate.web import stats

from cli_helpers import cli, write_config
from helpers import mail

HOT = "hotline@example.com"
UTC = dt.UTC


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, tzinfo=UTC)


def setup(tmp_path: Path, db_url: str) -> tuple[Path, Pipeline]:
    """Five tickets in November 2026:

    - A, 2 Nov: answered after 30 min, closed 3 Nov (24 h)
    - B, 2 Nov: answered after 90 min, open
    - C, 3 Nov: never answered, closed 9 Nov (6 days)
    - D, 9 Nov (second week), by bob@big.test: open
    - E, 28 Oct (before the range), by bob@big.test: closed 2 Nov (5 days)
    bob replied twice (one on A, one on B), once in an internal note (not counted),
    and accounted 45 minutes; alice accounted 30 minutes and never replied.
    """
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    p = Pipeline(config_mod.load(cfg))
    shapes = {
        "A": ("carol@small.test", {"created_at": at(2), "first_response_at": at(2) +
              dt.timedelta(minutes=30), "state": "closed", "closed_at": at(3)}),
        "B": ("dave@small.test", {"created_at": at(2), "first_response_at": at(2) +
              dt.timedelta(minutes=90), "state": "open"}),
        "C": ("carol@small.test", {"created_at": at(3), "state": "closed", "closed_at": at(9)}),
        "D": ("bob@big.test", {"created_at": at(9), "state": "open"}),
        "E": ("bob@big.test", {"created_at": dt.datetime(2026, 10, 28, 12, tzinfo=UTC),
              "state": "closed", "closed_at": at(2)}),
    }  # fmt: skip
    ids = {}
    for name, (sender, values) in shapes.items():
        r = p.deliver_one(mail(f"Case {name}", sender=sender), HOT)
        with db.transaction(p.sessions) as s:
            s.execute(update(Ticket).where(Ticket.number == r.ticket_number).values(**values))
            ids[name] = s.execute(
                select(Ticket.id).where(Ticket.number == r.ticket_number)
            ).scalar_one()
    with db.transaction(p.sessions) as s:
        bob = agents.add(s, "bob", "bob@agents.test", "Bob", [])
        alice = agents.add(s, "alice", "alice@agents.test", "Alice", [])
        for ticket, internal in (("A", False), ("B", False), ("B", True)):
            s.add(Article(ticket_id=ids[ticket], direction="out", sender_type="agent",
                          internal=internal, agent_id=bob.id, created_at=at(4)))  # fmt: skip
        s.add(TimeEntry(ticket_id=ids["A"], agent_id=bob.id, minutes=45, created_at=at(4)))
        s.add(TimeEntry(ticket_id=ids["C"], agent_id=alice.id, minutes=30, created_at=at(5)))
    return cfg, p


def test_weekly_report_by_hand(tmp_path: Path, db_url: str) -> None:
    _, p = setup(tmp_path, db_url)
    with p.engine.connect() as conn:
        report = stats.build(conn, p.config, dt.date(2026, 11, 2), dt.date(2026, 11, 15), "week")
    w45, w46 = report["periods"]
    assert (w45["period"], w45["start"]) == ("2026-W45", "2026-11-02")
    assert (w45["created"], w45["closed"], w45["open_at_end"]) == (3, 2, 2)  # E was open before
    assert (w46["created"], w46["closed"], w46["open_at_end"]) == (1, 1, 2)
    assert w45["first_response_median_minutes"] == 60.0  # of 30 and 90
    assert w45["first_response_p90_minutes"] == 84.0
    assert w45["close_median_minutes"] == (24 * 60 + 5 * 1440) / 2  # A and E
    assert w46["close_median_minutes"] == 6 * 1440  # C
    total = report["total"]
    assert (total["created"], total["closed"], total["open_at_end"]) == (4, 3, 2)
    assert report["agents"] == [
        {"agent": "bob", "replies": 2, "time_minutes": 45},
        {"agent": "alice", "replies": 0, "time_minutes": 30},
    ]
    assert [b["tickets"] for b in report["first_response_distribution"]] == [0, 1, 1, 0, 0, 0]
    assert report["top_senders"] == [  # ties: the older customer first
        {"address": "carol@small.test", "tickets": 2},
        {"address": "dave@small.test", "tickets": 1},
        {"address": "bob@big.test", "tickets": 1},
    ]


def test_days_follow_the_configured_zone(tmp_path: Path, db_url: str) -> None:
    """At 23:30 UTC on 2 November it is 3 November in Tokyo."""
    _, p = setup(tmp_path, db_url)
    p.config.system.timezone = "Asia/Tokyo"
    with db.transaction(p.sessions) as s:
        s.execute(update(Ticket).where(Ticket.title == "Case B").values(created_at=at(2, 23)))
    with p.engine.connect() as conn:
        report = stats.build(conn, p.config, dt.date(2026, 11, 2), dt.date(2026, 11, 3), "day")
    assert [r["created"] for r in report["periods"]] == [1, 2]


def test_cli_text_json_csv_and_errors(tmp_path: Path, db_url: str) -> None:
    cfg, p = setup(tmp_path, db_url)
    args = ("stats", "--from", "2026-11-01", "--to", "2026-11-30", "--by", "month")
    out = json.loads(cli(cfg, *args, "--json").stdout)
    assert [r["period"] for r in out["periods"]] == ["2026-11"]
    assert out["total"]["created"] == 4 and out["total"]["closed"] == 3

    text = cli(cfg, *args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0] == "2026-11-01 .. 2026-11-30 by month (UTC)"
    assert any(line.startswith("2026-11") and "1h00m / 1h24m" in line for line in lines)
    assert any(line.split()[:3] == ["bob", "2", "45m"] for line in lines)
    assert "top senders" in lines and "      2  carol@small.test" in lines

    table = list(csv.DictReader(io.StringIO(cli(cfg, *args, "--csv").stdout.decode())))
    assert [r["period"] for r in table] == ["2026-11", "total"]
    assert table[0]["open_at_end"] == "2"

    queue = json.loads(cli(cfg, *args, "--queue", "Hotline", "--json").stdout)
    assert queue["total"]["created"] == 4

    with p.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(Ticket)).scalar_one()
    for bad, message in (
        (("--queue", "Nowhere"), b"no queue named 'Nowhere'"),
        (("--from", "2026-13-01"), b"'2026-13-01' is not a date (YYYY-MM-DD)"),
        (("--from", "2026-12-01", "--to", "2026-11-01"), b"--from is after --to"),
        (("--json", "--csv"), b"choose one of --json and --csv"),
    ):
        proc = cli(cfg, "stats", *bad)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert b"Traceback" not in proc.stderr
    with p.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Ticket)).scalar_one() == before
    p.engine.dispose()
