"""Issue 28, part 4: big mail in bounded memory, and the same answers as before.

The LMTP DATA reader (one buffer instead of a bytearray per line), the parser that sets
big base64 bodies aside (decoded from the raw bytes, not through the stdlib parser's
three copies), and the dedup key hashed without copying the mail: each must give what
the simple way gave, for every shape. The memory itself is measured in
bench/bigmail.py (a figure, not a timed test)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otrs_mailgate.ingest import auth
from otrs_mailgate.mail import parse as parse_mod
from otrs_mailgate.mail.parse import parse, significant_bytes, significant_sha256

from helpers import make_config
from lmtp_helpers import RawLMTP, running

HOT = "hotline@example.com"


def _parsed_both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    fast = parse(raw)
    with monkeypatch.context() as m:
        m.setattr(parse_mod, "ASIDE_MAIL", 1 << 62)  # never set aside: the stdlib reads all
        slow = parse(raw)
    return fast, slow


def _same(fast, slow) -> None:  # type: ignore[no-untyped-def]
    assert fast.body_text == slow.body_text
    assert fast.subject == slow.subject and fast.problem == slow.problem
    assert [(a.filename, a.content_type, a.data) for a in fast.attachments] == [
        (a.filename, a.content_type, a.data) for a in slow.attachments
    ]


def big_part(size: int, junk: bool = False) -> bytes:
    data = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return data.replace(b"A", b"A*", 50) if junk else data  # '*' is no base64: skipped


@pytest.mark.parametrize("junk", [False, True])
def test_big_attachments_decode_as_the_stdlib_would(monkeypatch, junk: bool) -> None:
    inner = (
        b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
        b"--alt\r\nContent-Type: text/html\r\n\r\n<p>Hello.</p>\r\n--alt--\r\n"
    )
    raw = (
        b"From: a@customer.test\r\nTo: hotline@example.com\r\nSubject: Scans\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"preamble\r\n--outer\r\n" + inner + b"--outer\r\n"
        b'Content-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + big_part(700_000, junk)
        + b"--outer\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: BASE64\r\n"
        b'Content-Disposition: attachment; filename="b.png"\r\n\r\n'
        + big_part(500_000)
        + b"--outer\r\nContent-Type: text/plain; name=notes.txt\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + big_part(300_000)  # text: never set aside
        + b"--outer--\r\nepilogue\r\n"
    )
    fast, slow = _parsed_both_ways(raw, monkeypatch)
    _same(fast, slow)
    assert [a.filename for a in fast.attachments] == ["a.pdf", "b.png", "notes.txt"]
    assert fast.body_text == "Hello."


def test_a_mail_without_a_closing_boundary_or_with_lf_lines(monkeypatch) -> None:
    raw = (
        b"From: a@customer.test\nSubject: cut short\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nSee below.\n--b\n"
        b"Content-Type: application/zip\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(os.urandom(900_000))
    )  # Postfix's pipe(8) hands LF lines; the sender's client died before the end
    fast, slow = _parsed_both_ways(raw, monkeypatch)
    _same(fast, slow)
    assert len(fast.attachments) == 1 and fast.attachments[0].data == slow.attachments[0].data


def test_a_token_a_sender_writes_names_nothing(monkeypatch) -> None:
    """The placeholder carries a nonce of each parse: text that looks like one is data."""
    fake = b"OTRSASIDE0123456789ABCDEFN0"
    raw = (
        b"From: a@customer.test\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + fake + b"\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + big_part(900_000) + b"--b--\r\n"
    )
    fast, slow = _parsed_both_ways(raw, monkeypatch)
    _same(fast, slow)
    assert fast.attachments[0].data == base64.b64decode(fake + b"=" * (-len(fake) % 4))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 7, 1 << 20]))
def test_the_dedup_key_is_the_hash_of_the_significant_bytes(raw: bytes, chunk: int) -> None:
    expected = hashlib.sha256(significant_bytes(raw)).hexdigest()
    assert significant_sha256(raw, chunk) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"Received: x", b":", b" "])))
def test_the_dedup_key_with_line_ends_of_every_kind(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    for chunk in (1, 2, 5):
        assert significant_sha256(raw, chunk) == hashlib.sha256(significant_bytes(raw)).hexdigest()


def test_an_unsigned_mail_is_not_handed_to_dkimpy() -> None:
    assert auth._signed(b"From: a\r\nDKIM-Signature: v=1\r\n\r\nbody")
    assert auth._signed(b"dkim-signature : v=1\n\nbody")
    assert not auth._signed(b"From: a\r\n\r\nDKIM-Signature: in the body\r\n")
    assert auth.signatures(b"From: a\r\n\r\n" + b"x" * 1000, lambda *a, **k: None) == []


# -- the DATA reader ------------------------------------------------------------------------


def _data(port: int, payload: bytes, recipients: int = 1) -> list[bytes]:
    """Raw LMTP: the DATA payload exactly as given (dot-stuffed by the caller)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"LHLO client.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"MAIL FROM:<a@customer.test>\r\n")
    f.readline()
    for _ in range(recipients):
        s.sendall(f"RCPT TO:<{HOT}>\r\n".encode())
        f.readline()
    s.sendall(b"DATA\r\n")
    assert f.readline().startswith(b"354")
    s.sendall(payload)
    replies = [f.readline() for _ in range(recipients)]
    s.close()
    return replies


def test_data_is_unstuffed_ended_and_limited_as_rfc_5321_says(db_url: str) -> None:
    config = make_config(db_url, lmtp={"max_message_size": 200_000})
    with running(config) as d:
        port = d.config.lmtp.port
        body = b"..leading dot\r\n.\r\nnot the end: stuffed\r\n...\r\n" + b"x" * 5000 + b"\r\n"
        head = b"From: a@customer.test\r\nSubject: dots\r\nMessage-ID: <dots@customer.test>\r\n\r\n"
        stuffed = head.replace(b"\r\n.", b"\r\n..") + body.replace(b"\r\n.", b"\r\n..")
        stuffed = b"." + stuffed if stuffed.startswith(b".") else stuffed
        [reply] = _data(port, stuffed.replace(b"\r\n.\r\n", b"\r\n..\r\n") + b".\r\n")
        assert reply.startswith(b"250"), reply
        with d.pipeline.sessions() as s:
            from sqlalchemy import select

            from otrs_mailgate.store.models import Article

            text = s.execute(select(Article.body_text)).scalar_one()
        assert text.startswith(".leading dot\n.\nnot the end: stuffed\n..")
        # over the limit: read to the end, kept nowhere, one 552 per recipient
        huge = head + (b"y" * 998 + b"\r\n") * 400
        replies = _data(port, huge + b".\r\n", recipients=2)
        assert [r[:9] for r in replies] == [b"552 5.3.4"] * 2
        # the session goes on: a small mail after it is taken
        RawLMTP(port).cmd("LHLO client.test")
