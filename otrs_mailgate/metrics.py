"""Counters for operators, served as Prometheus text on the status port (/metrics).

What this daemon did since it started (mails per LMTP outcome, the latency from
end of DATA to the reply, outbox results, escalations fired) comes from the
process; the outbox backlog comes from the database at each scrape, so it is the
same whichever daemon is asked.  Each Daemon has a registry of its own.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from otrs_mailgate.store import db
from otrs_mailgate.store.models import Outbox

log = logging.getLogger("otrs_mailgate.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _OutboxBacklog(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        rows = GaugeMetricFamily(
            "otrs_mailgate_outbox_rows",
            "Outbox rows by status, from the database",
            labels=["status"],
        )
        up = GaugeMetricFamily("otrs_mailgate_database_up", "1 if the database answered the scrape")
        return rows, up

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> list[GaugeMetricFamily]:
        rows, up = self._families()
        counts = {"queued": 0, "held": 0, "sending": 0, "sent": 0, "failed": 0, "bounced": 0}
        try:
            with db.read_only(self.engine) as conn:
                o = Outbox.__table__
                query = select(o.c.status, func.count()).group_by(o.c.status)
                for status, n in conn.execute(query):
                    counts[status] = n
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            return [rows, up]
        for status, n in sorted(counts.items()):
            rows.add_metric([status], n)
        up.add_metric([], 1)
        return [rows, up]


class Metrics:
    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.mails = Counter(
            "otrs_mailgate_mails",
            "Mails per LMTP recipient, by outcome (accepted: 250 after commit; tempfailed: "
            "4xx; rejected: 5xx, at RCPT or after DATA)",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "otrs_mailgate_ingest_seconds",
            "From the end of DATA to the LMTP replies (commit included)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox = Counter(
            "otrs_mailgate_outbox_mails",
            "Outbox mails handed to the MTA by this daemon, by result",
            ["result"],
            registry=self.registry,
        )
        self.escalations = Counter(
            "otrs_mailgate_escalations_fired",
            "Escalation warnings and levels fired by this daemon's scheduler",
            registry=self.registry,
        )
        for outcome in ("accepted", "tempfailed", "rejected"):
            self.mails.labels(outcome)
        for result in ("sent", "retried", "failed"):
            self.outbox.labels(result)
        if engine is not None:
            self.registry.register(_OutboxBacklog(engine))

    def reply(self, code: int) -> None:
        """Count one LMTP reply to a recipient by its code."""
        outcome = "accepted" if code < 400 else ("tempfailed" if code < 500 else "rejected")
        self.mails.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
