"""The mail server's spam verdict, believed only where our own MTA wrote it.

The filter (rspamd through its milter proxy, or SpamAssassin through spamass-milter)
runs in Postfix ahead of our milter and writes its verdict into the mail. A sender can
write the same headers; what tells ours apart:

- rspamd writes `X-Rspamd-Queue-Id` with Postfix's queue id, the `id` of the Received
  header our MTA put on top (`by <our host> (Postfix) with ESMTP id <qid>`); nobody
  outside knows that id before the mail is queued. Its `X-Spamd-Result` replaces the
  first one the sender wrote, so the first instance is rspamd's.
- spamass-milter replaces the first instance of each of its headers and names our
  host in `X-Spam-Checker-Version: SpamAssassin ... on <host>`; the first instances
  are its.

rspamd appends its headers below the sender's, so "above our Received header" (the
rule for Authentication-Results) does not fit it; the queue id is the stronger tie.
Headers that claim a verdict and fail the tie are reported, never believed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from otrs_mailgate.mail.parse import ParsedMail, raw_headers

_BY = re.compile(r"\bby\s+([A-Za-z0-9.-]+)", re.IGNORECASE)
_ID = re.compile(r"\bwith\s+\S+\s+id\s+([A-Za-z0-9]+)|\bid\s+([A-Za-z0-9]+)", re.IGNORECASE)
_RSPAMD_SCORE = re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*\]")
_SA_SCORE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_SA_HOST = re.compile(r"\bon\s+([A-Za-z0-9.-]+)\s*$", re.IGNORECASE)
VERDICT_HEADERS = (
    "X-Spamd-Result", "X-Rspamd-Queue-Id", "X-Rspamd-Server", "X-Spam-Status", "X-Spam-Flag",
    "X-Spam-Level", "X-Spam-Checker-Version", "X-Spam",
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    filter: str  # rspamd | spamassassin
    score: float
    spam: bool  # the score reaches the threshold
    detail: str  # for the history: what was read


@dataclass(frozen=True)
class Reading:
    verdict: Verdict | None  # believed
    ignored: str  # verdict headers there but not believed, and why ("" none)


def queue_id(mail: ParsedMail, hosts: Sequence[str]) -> str:
    """Postfix's queue id from the topmost Received header our MTA wrote, or ""."""
    if mail.message is None or not hosts:
        return ""
    wanted = {h.lower().rstrip(".") for h in hosts}
    for value in raw_headers(mail.message, "Received"):
        by = _BY.search(value)
        if by is None or by.group(1).lower().rstrip(".") not in wanted:
            continue
        found = _ID.search(value[by.end() :])
        return (found.group(1) or found.group(2)) if found else ""
    return ""


def read(mail: ParsedMail, kind: str, hosts: Sequence[str], threshold: float) -> Reading:
    """The verdict of filter `kind`, if our MTA's filter wrote it; else why any verdict
    headers there were not believed."""
    if mail.message is None or not kind:
        return Reading(None, "")
    present = [name for name in VERDICT_HEADERS if raw_headers(mail.message, name)]
    if kind == "rspamd":
        verdict, why = _rspamd(mail, hosts, threshold)
    else:
        verdict, why = _spamassassin(mail, hosts, threshold)
    if verdict is not None:
        return Reading(verdict, "")
    return Reading(None, f"{', '.join(present)} ignored: {why}" if present else "")


def _rspamd(mail: ParsedMail, hosts: Sequence[str], threshold: float) -> tuple[Verdict | None, str]:
    assert mail.message is not None
    qid = queue_id(mail, hosts)
    if not qid:
        return None, "no Received header of our MTA (spam.mta_hostnames) names a queue id"
    ids = [v.strip() for v in raw_headers(mail.message, "X-Rspamd-Queue-Id")]
    if qid not in ids:
        return None, f"no X-Rspamd-Queue-Id names our queue id {qid}: not our filter's"
    results = raw_headers(mail.message, "X-Spamd-Result")
    found = _RSPAMD_SCORE.search(results[0]) if results else None
    if found is None:
        status = raw_headers(mail.message, "X-Spam-Status")
        found = _SA_SCORE.search(status[0]) if status else None
    if found is None:
        return None, "our filter's headers carry no score"
    score = float(found.group(1))
    detail = f"rspamd score {score} (queue id {qid})"
    return Verdict("rspamd", score, score >= threshold, detail), ""


def _spamassassin(
    mail: ParsedMail, hosts: Sequence[str], threshold: float
) -> tuple[Verdict | None, str]:
    assert mail.message is not None
    versions = raw_headers(mail.message, "X-Spam-Checker-Version")
    statuses = raw_headers(mail.message, "X-Spam-Status")
    if not versions or not statuses:
        return None, "no X-Spam-Checker-Version and X-Spam-Status of spamass-milter"
    host = _SA_HOST.search(versions[0].strip())
    wanted = {h.lower().rstrip(".") for h in hosts}
    if host is None or host.group(1).lower().rstrip(".") not in wanted:
        return None, "X-Spam-Checker-Version does not name our MTA (spam.mta_hostnames)"
    found = _SA_SCORE.search(statuses[0])
    if found is None:
        return None, "X-Spam-Status carries no score"
    score = float(found.group(1))
    detail = f"SpamAssassin score {score} (on {host.group(1)})"
    return Verdict("spamassassin", score, score >= threshold, detail), ""
