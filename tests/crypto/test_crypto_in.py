"""Issue 29, "In": OpenPGP and S/MIME mail as clients send it, made by gpg and openssl,
through the pipeline: decrypted where it was encrypted to a queue's key, signatures
checked, the raw mail stored as it came, the decrypted text searchable only where the
queue allows it, and a mail that cannot be read stored with the reason."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from crypto_helpers import (
    CUSTOMER,
    QUEUE,
    Keys,
    copy_keys,
    entity,
    gpg,
    make_keys,
    pgp_mime_encrypted,
    pgp_mime_signed,
    require_tools,
    site_keys,
    smime,
    stop_agent,
    temp_root,
)
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Article, Attachment, RawMessage
from otrs_mailgate.tickets import queries

from helpers import make_config, outbox_mails

SECRET_WORD = "zebrapassword42"


@pytest.fixture(scope="session")
def session_keys() -> Iterator[Keys]:
    require_tools()
    root = temp_root()
    yield make_keys(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def keys(session_keys: Keys, tmp_path: Path) -> Keys:
    return copy_keys(session_keys, tmp_path / "client-keys")


@pytest.fixture
def p(db_url: str, keys: Keys, tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = Pipeline(make_config(db_url, **site_keys(keys, tmp_path)))
    yield pipeline
    assert pipeline.site.keyring is not None
    pipeline.site.keyring.stop()


def stored(p: Pipeline, number: str) -> tuple[Article, dict[str, object], bytes]:
    with p.sessions() as s:
        ticket_id = s.execute(
            select(queries.Ticket.id).where(queries.Ticket.number == number)
        ).scalar()
        article = s.execute(select(Article).where(Article.ticket_id == ticket_id)).scalars().first()
        raw = s.execute(select(RawMessage.data).where(RawMessage.id == article.raw_id)).scalar()
        s.expunge(article)
    return article, json.loads(article.protection or "{}"), bytes(raw)


def found(p: Pipeline, word: str) -> list[str]:
    with p.sessions() as s:
        rows, _ = queries.results(s, p.config, word, 50)
    return [r["number"] for r in rows]


def test_pgp_mime_encrypted_is_decrypted_and_kept_as_it_came(p: Pipeline, keys: Keys) -> None:
    raw = pgp_mime_encrypted(keys, "Login", entity(f"My password is {SECRET_WORD}.", b"%PDF-1.4 x"))
    number = p.deliver_one(raw, QUEUE).ticket_number
    article, shield, stored_raw = stored(p, number)
    assert SECRET_WORD in article.body_text
    assert shield["encrypted"] and shield["decrypted"] and shield["kind"] == "pgp/mime"
    assert stored_raw.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")  # as it came
    assert SECRET_WORD.encode() not in stored_raw  # never a decrypted copy in the raw store
    with p.sessions() as s:
        names = s.execute(select(Attachment.filename)).scalars().all()
    assert names == ["secret.pdf"]
    assert found(p, SECRET_WORD) == []  # index_encrypted is off
    for mail in outbox_mails(p):
        assert SECRET_WORD not in mail.as_string()  # nothing decrypted leaves in plain text


def test_index_encrypted_makes_the_decrypted_text_searchable(
    db_url: str, keys: Keys, tmp_path: Path
) -> None:
    cfg = site_keys(keys, tmp_path)
    queues = [{"name": "Hotline", "addresses": [QUEUE], "index_encrypted": True}]
    p = Pipeline(make_config(db_url, queue=queues, **cfg))
    number = p.deliver_one(pgp_mime_encrypted(keys, "Login", entity(SECRET_WORD)), QUEUE)
    assert found(p, SECRET_WORD) == [number.ticket_number]


def test_signed_and_encrypted_in_one_pass(p: Pipeline, keys: Keys) -> None:
    raw = pgp_mime_encrypted(keys, "Signed secret", entity("Both at once."), sign=True)
    _, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "valid" and shield["signer_is_sender"]
    assert CUSTOMER in str(shield["signer"])


def test_pgp_mime_signed_valid_and_tampered(p: Pipeline, keys: Keys) -> None:
    raw = pgp_mime_signed(keys, "Signed", entity("I really mean it."))
    article, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "valid" and not shield["encrypted"]
    assert "I really mean it." in article.body_text
    forged = raw.replace(b"I really mean it.", b"I really mean IT.")
    _, shield, _ = stored(p, p.deliver_one(forged, QUEUE).ticket_number)
    assert shield["signature"] == "invalid"


def test_a_signer_we_do_not_know(db_url: str, keys: Keys, tmp_path: Path) -> None:
    p = Pipeline(make_config(db_url, **site_keys(keys, tmp_path, know_customer=False)))
    raw = pgp_mime_signed(keys, "Signed", entity("Who am I?"))
    _, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "key unknown"


def test_encrypted_to_somebody_else_is_stored_with_the_reason(p: Pipeline, keys: Keys) -> None:
    raw = pgp_mime_encrypted(keys, "Not for you", entity("secret"), to="someone@else.test")
    _, shield, stored_raw = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["encrypted"] and not shield["decrypted"]
    assert "key we do not hold" in str(shield["problem"])
    assert stored_raw.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    # broken armor: the same, nothing crashes
    broken = raw.replace(b"-----END PGP MESSAGE-----", b"")
    _, shield, _ = stored(p, p.deliver_one(broken, QUEUE).ticket_number)
    assert shield["encrypted"] and not shield["decrypted"] and shield["problem"]


def test_inline_pgp_encrypted_and_clearsigned(p: Pipeline, keys: Keys) -> None:
    from crypto_helpers import head

    armored = gpg(keys.customer_home, "--armor", "--trust-model", "always", "--encrypt",
                  "--recipient", QUEUE, data=f"Inline {SECRET_WORD}".encode())  # fmt: skip
    raw = head("Inline", "text/plain; charset=us-ascii") + armored.replace(b"\n", b"\r\n")
    article, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["kind"] == "pgp/inline" and shield["decrypted"]
    assert article.body_text == f"Inline {SECRET_WORD}"
    signed = gpg(keys.customer_home, "--clearsign", "--local-user", CUSTOMER, "--passphrase", "",
                 data=b"- dashes stay\nPlain and signed.\n")  # fmt: skip
    stop_agent(keys.customer_home)
    raw = head("Clearsigned", "text/plain; charset=us-ascii") + signed.replace(b"\n", b"\r\n")
    article, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "valid"
    assert "Plain and signed." in article.body_text and "BEGIN PGP" not in article.body_text


@pytest.mark.parametrize("how", ["encrypt", "sign", "opaque", "sign+encrypt"])
def test_smime_shapes(p: Pipeline, keys: Keys, how: str) -> None:
    raw = smime(keys, f"S/MIME {how}", entity(f"S/MIME says {SECRET_WORD}."), how)
    article, shield, stored_raw = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert f"S/MIME says {SECRET_WORD}." in article.body_text, (shield, article.body_text)
    assert shield["kind"] == "smime"
    assert shield["encrypted"] == ("encrypt" in how) and (
        shield["decrypted"] or "encrypt" not in how
    )
    if "sign" in how or how == "opaque":
        assert shield["signature"] == "valid", shield
        assert shield["signer_is_sender"]
    if "encrypt" in how:
        assert SECRET_WORD.encode() not in stored_raw


def test_smime_signed_by_a_certificate_nobody_vouches_for(p: Pipeline, keys: Keys) -> None:
    raw = smime(keys, "Stranger", entity("Trust me."), "stranger")
    _, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "key unknown"
    tampered = raw.replace(b"Trust me.", b"Trust ME.")
    _, shield, _ = stored(p, p.deliver_one(tampered, QUEUE).ticket_number)
    assert shield["signature"] == "invalid"


def test_rfc_3156_example_shape_through_a_pipe(p: Pipeline, keys: Keys) -> None:
    """The shape of RFC 3156's own multipart/signed example (as OpenPGP.js and
    ProtonMail's tests carry it): quoted-printable ISO-8859-1 with trailing blanks and a
    line starting "From ", micalg=pgp-md5 in odd order, a blank line before the
    signature part's header; signed over CRLF as the RFC says, delivered with the bare
    LF line ends Postfix's pipe(8) gives. Made here with gpg, not copied."""
    from crypto_helpers import CUSTOMER, stop_agent

    inner = (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=A1Hola!\r\n\r\nFrom=20the desk: a line that once began with From.\r\n"
        b"Trailing blanks stay   =20\r\nme   \r\n"
    )
    signature = gpg(keys.customer_home, "--armor", "--detach-sign", "--local-user", CUSTOMER,
                    "--passphrase", "", data=inner)  # fmt: skip
    stop_agent(keys.customer_home)
    raw = (
        (
            f"From: Carla Customer <{CUSTOMER}>\nTo: {QUEUE}\nSubject: Hola\nMime-Version: 1.0\n"
            "Message-ID: <hola@customer.test>\n"
            "Content-Type: multipart/signed; boundary=bar; micalg=pgp-md5;\n"
            ' protocol="application/pgp-signature"\n\n--bar\n'
        ).encode()
        + inner.replace(b"\r\n", b"\n")
        + (b"\n--bar\n\nContent-Type: application/pgp-signature\n\n" + signature + b"\n--bar--\n")
    )
    article, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "valid", shield
    assert "¡Hola!" in article.body_text and "Trailing blanks stay" in article.body_text


def test_a_signer_other_than_from_and_a_revoked_key(
    p: Pipeline, keys: Keys, tmp_path: Path
) -> None:
    """Signed by the customer's key, sent From another address: valid, and said to be
    by somebody else. Then the customer revokes the key: its signatures are no proof."""
    from crypto_helpers import CUSTOMER, head

    inner = entity("Sent for my colleague.")
    signature = gpg(keys.customer_home, "--armor", "--detach-sign", "--local-user", CUSTOMER,
                    "--passphrase", "", data=inner)  # fmt: skip
    ctype = 'multipart/signed; micalg=pgp-sha512; protocol="application/pgp-signature"; boundary=s'
    body = b"--s\r\n" + inner + b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\n"
    body += signature.replace(b"\n", b"\r\n") + b"\r\n--s--\r\n"
    raw = head("For a colleague", ctype, sender="colleague@customer.test") + body
    _, shield, _ = stored(p, p.deliver_one(raw, QUEUE).ticket_number)
    assert shield["signature"] == "valid" and shield["signer_is_sender"] is False
    # the key revoked: the revocation certificate gpg made with the key, imported here
    cert = keys.customer_home / "openpgp-revocs.d" / f"{keys.customer_fpr}.rev"
    revocation = cert.read_bytes().replace(b":-----BEGIN", b"-----BEGIN")
    ring = p.site.keyring
    assert ring is not None
    ring.import_keys(revocation)
    again = head("Signed again", ctype) + body
    _, shield, _ = stored(p, p.deliver_one(again, QUEUE).ticket_number)
    assert shield["signature"] == "key revoked", shield
