"""Helpers shared by the tests: configs, test mails, skip-or-fail."""

from __future__ import annotations

import os
import uuid
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail.compose import Responder
from otrs_mailgate.mail.parse import POLICY
from otrs_mailgate.outbound import outbox
from otrs_mailgate.store.models import Outbox

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path(os.environ.get("OTRS_MAILGATE_CORPUS", "../shared/corpus")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"
# The tests' own DNS server ("127.0.0.1:port", set by conftest's test_dns): configs made
# here send SPF, DMARC and DKIM look-ups to it, never to the machine's resolver.
TEST_DNS: list[str] = []

# A calendar that is always open, for SLA tests whose arithmetic should be plain minutes.
ALWAYS_TOML = '[[calendar]]\nname = "always"\n[calendar.hours]\n' + "".join(
    f'{day} = ["00:00-24:00"]\n' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


def need(condition: bool, reason: str) -> None:
    """Skip with reason on a developer's machine; fail under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def make_config(db_url: str, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "system": {"id": "10", "domain": "mailgate.test", "language": "en"},
        "database": {"url": db_url},
        "queue": [
            # "always": the tests' senders are not authenticated (issue 28's own tests
            # run the default, "authenticated", against a DNS server of their own)
            {
                "name": "Hotline",
                "addresses": ["hotline@example.com"],
                "display_name": "Hotline",
                "acknowledge": "always",
            },
            {
                "name": "Support-DE",
                "addresses": ["support@example.de"],
                "language": "de",
                "acknowledge": "always",
            },
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    for queue in data["queue"]:
        queue.setdefault("acknowledge", "always")  # see above
    if TEST_DNS:
        data["system"].setdefault("dns_servers", list(TEST_DNS))
    return Config.model_validate(data)


def mail(
    subject: str = "Printer on fire",
    body: str = "Please help.",
    *,
    sender: str = "Alice Customer <alice@customer.test>",
    to: str = "hotline@example.com",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A small, well-formed test mail as bytes."""
    mid = message_id or f"{uuid.uuid4().hex}@customer.test"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: <{mid}>",
        "Date: Sun, 22 Nov 2026 10:00:00 +0100",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def count(pipeline: Pipeline, model: type) -> int:
    """Rows in a model's table."""
    with pipeline.sessions() as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def outbox_mails(pipeline: Pipeline) -> list[EmailMessage]:
    """Every outbox row as the mail the sender would send (rendered as it would be)."""
    responder = Responder(pipeline.config)
    with pipeline.sessions() as s:
        rows = s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
    return [
        message_from_bytes(outbox.render(responder, r).replace(b"\r\n", b"\n"), policy=POLICY)
        for r in rows
    ]
