"""Issue 29, "Agents": a command mail proven by the agent's own OpenPGP signature where
their domain does not DKIM-sign: valid, by a key registered with `agent add-key`, and
covering the headers DKIM would have to sign (protected headers inside the signed part,
as Thunderbird sends them). Anything less is refused with the reason."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import pytest
from crypto_helpers import (
    Keys,
    copy_keys,
    gpg,
    make_keys,
    new_home,
    require_tools,
    site_keys,
    stop_agent,
    temp_root,
)
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, Ticket
from otrs_mailgate.tickets import agents

from agent_helpers import Desk, SigningDomain
from helpers import mail, make_config

ALICE = "alice@agents.test"


@pytest.fixture(scope="module")
def session_keys() -> Iterator[tuple[Keys, Path, str]]:
    require_tools()
    root = temp_root()
    keys = make_keys(root)
    home = new_home(root, "alice")
    gpg(home, "--passphrase", "", "--quick-gen-key", f"Alice <{ALICE}>", "ed25519", "sign", "never")
    out = gpg(home, "--with-colons", "--list-keys", ALICE).decode()
    fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr"))
    stop_agent(home)
    yield keys, home, fpr
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def desk(db_url: str, session_keys: tuple[Keys, Path, str], tmp_path: Path) -> Iterator[Desk]:
    keys, home, fpr = session_keys
    mine = copy_keys(keys, tmp_path / "client-keys")
    config = make_config(db_url, **site_keys(mine, tmp_path))  # agents.dkim: required
    d = Desk(Pipeline(config), SigningDomain())
    ring = d.p.site.keyring
    assert ring is not None
    ring.import_keys(gpg(home, "--armor", "--export", fpr))
    stop_agent(home)
    with db.transaction(d.p.sessions) as s:
        agents.set_key(s, "alice", fpr, add=True)
    yield d
    ring.stop()


def signed_command(home: Path, to: str, subject: str, body: str, *, protect: bool = True,
                   outer_subject: str | None = None, user: str = ALICE) -> bytes:  # fmt: skip
    """PGP/MIME signed as Thunderbird sends it: the headers again inside the signed
    part (protected-headers="v1") when `protect`."""
    headers = {
        "From": f"Alice <{ALICE}>", "To": to, "Subject": subject,
        "Date": format_datetime(dt.datetime.now(dt.UTC)),
        "Message-ID": f"<{uuid.uuid4().hex}@agents.test>",
    }  # fmt: skip
    inner_head = 'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\n'
    if protect:
        inner_head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    entity = (inner_head + "Content-Transfer-Encoding: 7bit\r\n\r\n" + body + "\r\n").encode()
    signature = gpg(home, "--armor", "--detach-sign", "--local-user", user, "--passphrase", "",
                    data=entity)  # fmt: skip
    stop_agent(home)
    headers["Subject"] = outer_subject or subject
    outer = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    outer += ('MIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=pgp-sha512; '
              'protocol="application/pgp-signature"; boundary="s"\r\n\r\n')  # fmt: skip
    return outer.encode() + (
        b"--s\r\n" + entity + b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\n"
        + signature.replace(b"\n", b"\r\n") + b"\r\n--s--\r\n"
    )  # fmt: skip


def state(d: Desk, number: str) -> str:
    with d.p.sessions() as s:
        return s.execute(select(Ticket.state).where(Ticket.number == number)).scalar_one()


def refusals(d: Desk) -> list[str]:
    with d.p.sessions() as s:
        rows = s.execute(select(History.detail).where(History.type == "CommandRefused"))
        return ["; ".join(json.loads(r)["reasons"]) for r in rows.scalars()]


def test_a_signed_command_mail_with_protected_headers_is_proof(
    desk: Desk, session_keys: tuple[Keys, Path, str]
) -> None:
    _, home, _ = session_keys
    number = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), "hotline@example.com")
    number = number.ticket_number
    to = desk.reply_address("alice", number)
    raw = signed_command(home, to, f"Re: [Ticket#{number} close] Printer", "Fixed it.")
    desk.p.deliver_one(raw, to, ALICE)
    assert refusals(desk) == []
    assert state(desk, number) == "closed"


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("unprotected", "does not cover"),
        ("subject changed", "does not cover subject"),
        ("foreign key", "not registered for alice"),
    ],
)
def test_less_than_that_is_refused_with_the_reason(
    desk: Desk, session_keys: tuple[Keys, Path, str], case: str, why: str
) -> None:
    keys, home, _ = session_keys
    number = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), "hotline@example.com")
    number = number.ticket_number
    to = desk.reply_address("alice", number)
    subject = f"Re: [Ticket#{number}] Printer"
    if case == "unprotected":
        raw = signed_command(home, to, f"Re: [Ticket#{number} close] Printer", "x", protect=False)
    elif case == "subject changed":  # a relay (or a thief) adds `close` after signing
        raw = signed_command(home, to, subject, "x", outer_subject=subject.replace("]", " close]"))
    else:  # the customer's own key, signing a mail that claims to be alice's
        raw = signed_command(keys.customer_home, to, f"Re: [Ticket#{number} close] Printer", "x",
                             user="cus@customer.test")  # fmt: skip
    desk.p.deliver_one(raw, to, ALICE)
    assert state(desk, number) != "closed"
    [reason] = refusals(desk)
    assert why in reason, reason
