"""Issue 29, "Out": answers to a customer who wrote encrypted go encrypted to their key
(learned from their Autocrypt header, or from their signed S/MIME mail), or are held
without one; a queue with `sign = true` signs what it sends. What leaves is read back
with the customer's own tools: `gpg --decrypt`, `gpg --verify`, `openssl smime`."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from crypto_helpers import (
    CUSTOMER,
    QUEUE,
    Keys,
    copy_keys,
    entity,
    gpg,
    head,
    make_keys,
    pgp_mime_encrypted,
    require_tools,
    site_keys,
    smime,
    stop_agent,
    temp_root,
)
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound.outbox import Sender
from otrs_mailgate.store.models import Outbox

from agent_helpers import Desk, SigningDomain
from helpers import make_config
from lmtp_helpers import free_port


class Sink:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.received.append(envelope.original_content)
        return "250 2.0.0 queued"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    yield handler, port
    ctl.stop()


@pytest.fixture(scope="module")
def session_keys() -> Iterator[Keys]:
    require_tools()
    root = temp_root()
    yield make_keys(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def keys(session_keys: Keys, tmp_path: Path) -> Keys:
    return copy_keys(session_keys, tmp_path / "client-keys")


def desk(db_url: str, keys: Keys, tmp_path: Path, port: int, know_customer: bool = False,
         **queue: object) -> Desk:  # fmt: skip
    cfg = site_keys(keys, tmp_path, know_customer=know_customer)
    queues = [{"name": "Hotline", "addresses": [QUEUE], "acknowledge": "always", **queue}]
    config = make_config(db_url, queue=queues, smtp={"port": port}, **cfg)
    d = Desk(Pipeline(config), SigningDomain())
    return d


def autocrypt_header(keys: Keys) -> str:
    key = gpg(keys.customer_home, "--export", CUSTOMER)
    stop_agent(keys.customer_home)
    data = base64.b64encode(key).decode()
    folded = "\r\n ".join(data[i : i + 70] for i in range(0, len(data), 70))
    return f"Autocrypt: addr={CUSTOMER}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n"


def send_all(d: Desk) -> None:
    Sender(d.p.config, d.p.sessions).run_pass()


def to_customer(sink: Sink) -> list[bytes]:
    """What reached the customer: the mails whose header block names them in To."""
    found = []
    for mail in sink.received:
        head = mail.split(b"\r\n\r\n")[0].split(b"\r\n")
        if any(ln.startswith(b"To:") and CUSTOMER.encode() in ln for ln in head):
            found.append(mail)
    return found


def _armored(mail: bytes, what: bytes = b"MESSAGE") -> bytes:
    start = mail.index(b"-----BEGIN PGP " + what + b"-----")
    end = mail.index(b"-----END PGP " + what + b"-----") + len(b"-----END PGP " + what + b"-----")
    return mail[start:end]


def decrypt(keys: Keys, mail: bytes) -> bytes:
    plain = gpg(keys.customer_home, "--decrypt", data=_armored(mail))
    stop_agent(keys.customer_home)
    return plain


def test_answers_to_an_encrypted_request_go_encrypted_to_the_learned_key(
    db_url: str, keys: Keys, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    d = desk(db_url, keys, tmp_path, port)
    raw = pgp_mime_encrypted(keys, "Secret", entity("My secret request."))
    raw = raw.replace(b"MIME-Version", autocrypt_header(keys).encode() + b"MIME-Version", 1)
    number = d.p.deliver_one(raw, QUEUE).ticket_number
    send_all(d)
    [ack] = to_customer(handler)
    assert b"multipart/encrypted" in ack and b"My secret request" not in ack
    assert number.encode() in decrypt(keys, ack)  # the acknowledgement, for the customer only
    # the agent's answer by mail: encrypted too, the words only inside
    d.command("alice", number, body="Your new password is on its way.")
    send_all(d)
    answer = next(m for m in to_customer(handler) if m is not ack)
    assert b"password is on its way" not in answer
    assert b"Your new password is on its way." in decrypt(keys, answer)


def test_without_a_key_the_answer_is_held_and_the_agent_told(
    db_url: str, keys: Keys, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    d = desk(db_url, keys, tmp_path, port)  # no Autocrypt, no key for the customer
    number = d.p.deliver_one(pgp_mime_encrypted(keys, "Secret", entity("x")), QUEUE).ticket_number
    with d.p.sessions() as s:
        ack = s.execute(select(Outbox).where(Outbox.kind == "acknowledgement")).scalar_one()
    assert ack.status == "held" and "no key for cus@customer.test" in ack.last_error
    d.command("alice", number, body="Here is the answer.")
    send_all(d)
    assert to_customer(handler) == []  # nothing in plain text to who wrote encrypted
    from email import message_from_bytes, policy

    raw = next(m for m in handler.received if b"Processed" in m)
    transcript = message_from_bytes(raw, policy=policy.default).get_content()
    assert "NOT sent" in transcript and "no key for cus@customer.test" in transcript


def test_plain_when_the_queue_says_so(
    db_url: str, keys: Keys, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    d = desk(db_url, keys, tmp_path, port, without_key="plain")
    d.p.deliver_one(pgp_mime_encrypted(keys, "Secret", entity("x")), QUEUE)
    send_all(d)
    [ack] = to_customer(handler)
    assert b"multipart/encrypted" not in ack


def test_a_signing_queue_signs_what_it_sends(
    db_url: str, keys: Keys, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    d = desk(db_url, keys, tmp_path, port, sign=True)
    d.p.deliver_one(head("Plain question", "text/plain") + b"Hello?\r\n", QUEUE)
    send_all(d)
    [ack] = to_customer(handler)
    assert b"multipart/signed" in ack and b"application/pgp-signature" in ack
    # the customer checks it with gpg: the signed part as it came, the detached signature
    boundary = ack.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    body = ack.split(b"\r\n\r\n", 1)[1]
    signed = body.split(b"--" + boundary + b"\r\n", 1)[1].split(b"\r\n--" + boundary, 1)[0]
    sig = tmp_path / "sig.asc"
    sig.write_bytes(_armored(ack, b"SIGNATURE"))
    data = tmp_path / "signed"
    data.write_bytes(signed)
    done = subprocess.run(["gpg", "--homedir", str(keys.customer_home), "--verify", str(sig),
                           str(data)], capture_output=True)  # fmt: skip
    stop_agent(keys.customer_home)
    assert done.returncode == 0 and b"Good signature" in done.stderr, done.stderr


def test_smime_in_smime_out(
    db_url: str, keys: Keys, tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    """A customer who signs and encrypts with S/MIME: their certificate is learned from
    the signature, and the answer goes S/MIME-encrypted to it."""
    handler, port = sink
    d = desk(db_url, keys, tmp_path, port)
    d.p.deliver_one(smime(keys, "S/MIME", entity("Request by S/MIME."), "sign+encrypt"), QUEUE)
    send_all(d)
    [ack] = to_customer(handler)
    assert b"application/pkcs7-mime" in ack or b"application/x-pkcs7-mime" in ack
    folder = keys.root / "smime"
    done = subprocess.run(["openssl", "smime", "-decrypt", "-inkey", str(folder / "customer.key"),
                           "-recip", str(folder / "customer.crt")], input=ack,
                          capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"Ticket#" in done.stdout
