"""Who gets mail about a queue: only agents with access to it (issue 19, item 10)."""

from __future__ import annotations

from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Outbox
from otrs_mailgate.tickets import agents

from helpers import mail


def test_a_group_grant_reaches_its_members_only(pipeline: Pipeline) -> None:
    """Once any group had a grant on a queue, every enabled agent got that queue's
    notifications (with the customer's text and a reply address): the membership test
    was not tied to the agent. Now only members, and agents granted directly."""
    pipeline.ensure_queues()
    hot = pipeline.queue_id("Hotline")
    with db.transaction(pipeline.sessions) as s:
        agents.add(s, "alice", "alice@agents.test", "Alice", ["hotline-team"])
        agents.add(s, "bob", "bob@agents.test", "Bob", [])
        agents.add(s, "carol", "carol@agents.test", "Carol", ["other-team"])
        agents.add(s, "dave", "dave@agents.test", "Dave", [])
        agents.grant(s, hot, "@hotline-team", "rw")
        agents.grant(s, hot, "dave", "rw")
    with pipeline.engine.connect() as conn:
        assert [a.login for a in agents.workers(conn, hot)] == ["alice", "dave"]
        bob = agents.find(conn, "bob")
        assert bob is not None and agents.access(conn, bob.id, hot) is None
    pipeline.deliver_one(mail("Printer"), "hotline@example.com")
    with pipeline.sessions() as s:
        told = s.execute(select(Outbox.rcpt_to).where(Outbox.kind == "notification_new"))
        assert sorted(told.scalars()) == ["alice@agents.test", "dave@agents.test"]
