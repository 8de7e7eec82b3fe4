"""Is this mail from a human, a machine, or a delivery report?  Asked before anything else.

The rules are the union of what RT, Zammad, osTicket and FreeScout check (RFC 3834
and common practice).  Machine mail is stored but never answered and never
reopens a ticket; a report is attached to the ticket whose mail bounced.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from otrs_mailgate.mail.parse import ParsedMail

HUMAN, AUTO, REPORT = "human", "auto", "report"

_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_PRESENCE = (
    "List-Id",
    "List-Unsubscribe",
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-AutoReply-From",
    "X-Mail-Autoreply",
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


@dataclass(frozen=True)
class Classification:
    kind: str  # human | auto | report
    reason: str = ""

    @property
    def is_human(self) -> bool:
        return self.kind == HUMAN


def classify(
    mail: ParsedMail,
    envelope_sender: str | None,
    own_domains: Collection[str],
    own_addresses: Collection[str] = frozenset(),
) -> Classification:
    """envelope_sender None means unknown (an import), "" means the null return path."""
    msg = mail.message
    if msg is not None and msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        if report_type in ("delivery-status", "disposition-notification", ""):
            return Classification(REPORT, f"multipart/report; report-type={report_type or '?'}")
    auto_submitted = mail.header("Auto-Submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return Classification(AUTO, f"Auto-Submitted: {auto_submitted}")
    for name in ("Precedence", "X-Precedence"):
        value = mail.header(name).strip().lower()
        if value in _PRECEDENCE:
            return Classification(AUTO, f"{name}: {value}")
    for name in _PRESENCE:
        value = mail.header(name).strip()
        if value and value.lower() not in ("no", "false", "0"):
            return Classification(AUTO, f"{name} present")
    suppress = mail.header("X-Auto-Response-Suppress").strip().lower()
    if suppress and suppress != "none":
        return Classification(AUTO, f"X-Auto-Response-Suppress: {suppress}")
    x_loop = mail.header("X-Loop").strip().lower()
    if x_loop and any(a in x_loop for a in own_addresses):
        return Classification(AUTO, "X-Loop names us")
    if envelope_sender == "":
        return Classification(AUTO, "null return path")
    for address in (envelope_sender or "", mail.from_addr):
        if address and _DAEMON.match(address):
            return Classification(AUTO, f"sender {address}")
    if mail.message_id and "@" in mail.message_id:
        domain = mail.message_id.rsplit("@", 1)[1].lower()
        if domain in own_domains:
            return Classification(AUTO, "Message-ID in our own domain")
    return Classification(HUMAN)
