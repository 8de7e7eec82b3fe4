"""Teaching the spam filter what agents said: `spam` and `ham` feed the raw mail to
rspamd's controller (`POST /learnspam`, `/learnham`) or to a command such as
`spamc --learntype=spam` (SpamAssassin).

Each lesson is an outbox row (kind learn_spam / learn_ham, the raw mail as its data),
written in the transaction that moved the ticket, and sent by the outbox's Sender like
any mail: a filter that is down is tried again later with the same backoff, a refusal
is recorded on the row and in the ticket's history, and nothing blocks the agent.
"""

from __future__ import annotations

import shlex
import subprocess
import urllib.error
import urllib.request

from otrs_mailgate.config.schema import SpamConfig

KINDS = {"learn_spam": "spam", "learn_ham": "ham"}
TIMEOUT = 30.0


def configured(cfg: SpamConfig) -> bool:
    """Whether spam/ham are taught to anything."""
    return bool(cfg.rspamd_controller or cfg.learn_command)


def feed(cfg: SpamConfig, kind: str, raw: bytes) -> tuple[int, str]:
    """Teach one mail; (an SMTP-like code, what the filter said): 250 taught (or known
    already), 4xx try again later, 5xx never."""
    what = KINDS[kind]
    if cfg.rspamd_controller:
        return _rspamd(cfg, what, raw)
    if cfg.learn_command:
        return _command(cfg.learn_command, what, raw)
    return 554, "nothing to teach: [spam] names no rspamd_controller or learn_command"


def _rspamd(cfg: SpamConfig, what: str, raw: bytes) -> tuple[int, str]:
    base = cfg.rspamd_controller.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    request = urllib.request.Request(f"{base}/learn{what}", data=raw, method="POST")
    if cfg.rspamd_password:
        request.add_header("Password", cfg.rspamd_password)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            body = _short(answer.read())
            if "already learned" in body:  # 208: taught before, nothing more to do
                return 250, f"rspamd knew it as {what} already"
            return 250, f"rspamd learned it as {what}: {body}"
    except urllib.error.HTTPError as exc:
        body = _short(exc.read())
        if exc.code == 208 or "already learned" in body:  # taught before: done
            return 250, f"rspamd knew it as {what} already"
        if exc.code in (401, 403):
            return 554, f"rspamd refused the password (rspamd_password): {exc.code} {body}"
        return (451 if exc.code >= 500 else 554), f"rspamd answered {exc.code}: {body}"
    except (OSError, urllib.error.URLError) as exc:
        return 451, f"rspamd controller {base} unreachable: {exc}"


def _command(template: str, what: str, raw: bytes) -> tuple[int, str]:
    args = [part.replace("{kind}", what) for part in shlex.split(template)]
    try:
        done = subprocess.run(args, input=raw, capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError as exc:
        return 554, f"learn_command cannot run: {exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 451, f"learn_command failed: {exc}"
    said = _short(done.stdout + done.stderr)
    if done.returncode == 0:
        return 250, f"{args[0]} learned it as {what}: {said}"
    return 451, f"{args[0]} exited {done.returncode}: {said}"


def _short(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip().replace("\n", " ")[:300]
