"""`sla report` and `escalations check` on the command line, numbers checked by hand."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from sqlalchemy import update

from otrs_mailgate.config import schema as config_mod
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Escalation, Ticket

from cli_helpers import cli, write_config
from helpers import ALWAYS_TOML, mail

HOT = "hotline@example.com"
SLA = (
    ALWAYS_TOML
    + """
[[sla]]
name = "std"
queues = ["Hotline"]
calendar = "always"
first_response = 60
update = 120
solution = 600
"""
)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def setup(tmp_path: Path, db_url: str) -> tuple[Path, Pipeline, dt.datetime]:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, SLA)
    pipeline = Pipeline(config_mod.load(cfg))
    now = dt.datetime.now(dt.UTC)
    # 1: answered after 30 min, closed after 4 h: both in time
    # 2: answered after 90 min (late), still open, an update deadline passed unanswered
    # 3: eleven hours old, never answered: both deadlines passed
    shapes = [
        {"created_at": now - 5 * H, "first_response_at": now - 5 * H + 30 * M,
         "state": "closed", "closed_at": now - H},
        {"created_at": now - 5 * H, "first_response_at": now - 5 * H + 90 * M, "state": "open"},
        {"created_at": now - 11 * H, "state": "open"},
    ]  # fmt: skip
    for i, values in enumerate(shapes):
        number = pipeline.deliver_one(mail(f"Case {i}"), HOT).ticket_number
        with db.transaction(pipeline.sessions) as s:
            s.execute(update(Ticket).where(Ticket.number == number).values(**values))
            if i == 1:
                ticket_id = s.query(Ticket.id).filter(Ticket.number == number).scalar()
                s.add(Escalation(ticket_id=ticket_id, clock="update", due=now - H, level=1))
    return cfg, pipeline, now


def test_report_counts_shares_and_percentiles(tmp_path: Path, db_url: str) -> None:
    cfg, _, _ = setup(tmp_path, db_url)
    proc = cli(cfg, "sla", "report", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    (row,) = json.loads(proc.stdout)
    assert row["queue"] == "Hotline" and row["tickets"] == 3
    assert (row["first_response_met"], row["first_response_missed"]) == (1, 2)
    assert row["first_response_share"] == 0.3333
    assert (row["solution_met"], row["solution_missed"], row["solution_running"]) == (1, 1, 1)
    assert (row["update_met"], row["update_missed"], row["update_share"]) == (2, 1, 0.6667)
    assert row["first_response_median_minutes"] == 60.0  # of 30 and 90
    assert row["first_response_p90_minutes"] == 84.0
    assert row["solution_median_minutes"] == row["solution_p90_minutes"] == 240.0

    text = cli(cfg, "sla", "report").stdout.decode()
    assert "Hotline: 3 ticket(s)" in text and "within:  33.3%" in text

    table = list(csv.DictReader(io.StringIO(cli(cfg, "sla", "report", "--csv").stdout.decode())))
    assert table[0]["solution_running"] == "1" and table[0]["queue"] == "Hotline"


def test_report_period_and_queue_filters(tmp_path: Path, db_url: str) -> None:
    cfg, _, now = setup(tmp_path, db_url)
    since = (now - 6 * H).isoformat()
    (row,) = json.loads(cli(cfg, "sla", "report", "--from", since, "--json").stdout)
    assert row["tickets"] == 2
    proc = cli(cfg, "sla", "report", "--queue", "Support-DE", "--json")
    assert json.loads(proc.stdout) == []
    proc = cli(cfg, "sla", "report", "--queue", "Nope")
    assert proc.returncode == 2 and b"no queue named 'Nope'" in proc.stderr
    proc = cli(cfg, "sla", "report", "--json", "--csv")
    assert proc.returncode == 2 and b"choose one of --json and --csv" in proc.stderr
    proc = cli(cfg, "sla", "report", "--from", "yesterday")
    assert proc.returncode == 2 and b"'yesterday' is not an ISO date" in proc.stderr


def test_escalations_check_once_from_cron(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, SLA)
    pipeline = Pipeline(config_mod.load(cfg))
    pipeline.deliver_one(mail("Printer"), HOT)
    later = (dt.datetime.now(dt.UTC) + 61 * M).isoformat()
    proc = cli(cfg, "escalations", "check", "--now", later)
    assert proc.returncode == 0, proc.stderr.decode()
    # the first response warning (recorded, its deadline had passed) and level 1
    assert proc.stdout.decode().startswith("2 escalation(s) fired")
    again = cli(cfg, "escalations", "check", "--now", later).stdout.decode()
    assert again.startswith("0 escalation(s) fired") and "next due: 20" in again
    proc = cli(cfg, "escalations", "check", "--now", "soon")
    assert proc.returncode == 2 and b"'soon' is not an ISO date or time" in proc.stderr
