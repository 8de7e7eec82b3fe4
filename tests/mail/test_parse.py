"""The parser never crashes and shows what a mail client would show."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import pytest

from otrs_mailgate.mail.parse import NotAMail, looks_like_mail, parse


def test_corpus_parses(corpus: Path) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".box", ".eml"))
    assert len(files) >= 20, f"corpus incomplete at {corpus}"
    for path in files:
        raw = path.read_bytes()
        mail = parse(raw)
        assert mail.raw is raw
        assert not mail.unparsed, (path.name, mail.problem)


# (file, subject, attachment names) as Thunderbird shows them
EXPECTED = {
    "EmailParser-PostMaster-Test3.box": (
        "UTF-8 Test äöü 顧客コンタクト管理",
        ["utf-8-file-äöüß-カスタマ.txt"],
    ),
    "EmailParser-PostMaster-Test4.box": (
        'utf8: 使って / ISO-8859-1: Priorität" / cp-1251: Сергей Углицких',
        [],
    ),
    "EmailParser-UTF8Filename.box": ("---OBSCURED---M", ["Documentación.pdf"]),
    "EmailParser-EmptyEmail.eml": ("test", ["Łatwa sprawa.txt"]),
    "EmailParser-MultipartMixedPlain.eml": ("test multipart/mixed", ["1.txt"]),
    "EmailParser-UTF-7.box": (
        "Microsoft Forefront Protection for SharePoint successfully updated the Command "
        "scan engine on server XXX",
        [],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_values(corpus: Path, name: str) -> None:
    mail = parse((corpus / "otrs" / name).read_bytes())
    subject, files = EXPECTED[name]
    assert mail.subject == subject
    assert [a.filename for a in mail.attachments] == files


def test_corpus_details(corpus: Path) -> None:
    m = parse((corpus / "otrs" / "EmailParser-Bug10395.box").read_bytes())
    assert m.from_name == "dev.mydomain.somewhere - Oddział 3 w Warszawie, testtes A1"
    assert m.content_language == "pl"
    m = parse((corpus / "otrs" / "EmailParser-PostMaster-Test4.box").read_bytes())
    assert m.from_name == "Hans BÄKOSchönland"  # RFC 2047: space between encoded words goes
    m = parse((corpus / "otrs" / "EmailParser-MultipartMixedPlain.eml").read_bytes())
    assert m.body_text == "first part\n\n\nsecond part äöø"
    m = parse((corpus / "otrs" / "EmailParser-FilenameWithCRLF.box").read_bytes())
    assert all("\n" not in a.filename and "\r" not in a.filename for a in m.attachments)
    assert m.attachments[-1].content_type == "message/rfc822"


def _mail(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def test_bogus_charset_falls_back() -> None:
    m = parse(
        _mail(
            "Subject: =?x-unknown?Q?Gr=FC=DFe?=\nContent-Type: text/plain; charset=x-bogus\n",
            "Grüße".encode("latin-1"),
        )
    )
    assert m.body_text == "Grüße"
    assert "Gr" in m.subject


def test_raw_8bit_headers() -> None:
    raw = (
        b"Subject: Gr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen\r\nFrom: J\xf6rg <j@x.test>\r\n\r\nhi\r\n"
    )
    m = parse(raw)
    assert m.subject == "Grüße aus München"
    assert m.from_name == "Jörg" and m.from_addr == "j@x.test"


def test_rfc2231_filename_continuations() -> None:
    raw = _mail(
        "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n",
        b"--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n--B\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''Sch%C3%B6ne%20;\r\n"
        b" filename*1*=Gr%C3%BC%C3%9Fe.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"%PDF-1.4")
        + b"\r\n--B--\r\n",
    )
    m = parse(raw)
    assert [a.filename for a in m.attachments] == ["Schöne Grüße.pdf"]
    assert m.attachments[0].data == b"%PDF-1.4"
    assert m.body_text == "body"


def test_nested_message_rfc822() -> None:
    inner = b"Subject: inner one\r\nFrom: b@x.test\r\n\r\ninner body\r\n"
    raw = _mail(
        "Subject: outer\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n",
        b"--B\r\nContent-Type: text/plain\r\n\r\nouter body\r\n--B\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--B--\r\n",
    )
    m = parse(raw)
    assert m.body_text == "outer body"
    assert m.attachments[0].filename == "inner one.eml"
    assert b"inner body" in m.attachments[0].data


def test_html_only_mail_gets_a_text_rendering() -> None:
    html = (
        "<html><head><style>p{}</style></head><body><p>Hello&nbsp;<b>World</b></p>"
        "<ul><li>one</li><li>two</li></ul><a href='https://x.test/'>link</a></body></html>"
    )
    m = parse(_mail("Subject: h\nContent-Type: text/html; charset=utf-8\n", html.encode()))
    assert m.body_html == html
    assert m.body_text == "Hello World\n\n* one\n\n* two\n\nlink <https://x.test/>"


def test_empty_body_and_no_subject() -> None:
    m = parse(b"From: a@b.test\r\n\r\n")
    assert (m.subject, m.body_text, m.attachments) == ("", "", [])


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n", b"\x00\x01\x02garbage", b"just some text\n"])
def test_not_a_mail(raw: bytes) -> None:
    assert not looks_like_mail(raw)
    with pytest.raises(NotAMail):
        parse(raw)


def test_mbox_from_line_is_allowed() -> None:
    m = parse(b"From a@b.test  Thu Mar 20 10:00:00 2014\nSubject: hi\n\nbody\n")
    assert m.subject == "hi" and m.body_text == "body"


def test_dedup_key_ignores_trace_headers_only() -> None:
    a = parse(b"Received: from one\r\nMessage-ID: <m@x>\r\nSubject: s\r\n\r\nbody\r\n")
    b = parse(
        b"Received: from two\r\n  by three\r\nReturn-Path: <x@y>\r\nMessage-ID: <m@x>\r\n"
        b"Subject: s\r\n\r\nbody\r\n"
    )
    c = parse(b"Received: from two\r\nMessage-ID: <m@x>\r\nSubject: s\r\n\r\nother\r\n")
    d = parse(b"Message-ID: <m@x>\r\nSubject: another subject\r\n\r\nbody\r\n")
    assert a.dedup_key == b.dedup_key
    assert len({a.dedup_key, c.dedup_key, d.dedup_key}) == 3


def test_one_malformed_header_line_loses_no_other_header() -> None:
    """A line without a colon and a continuation without leading white space used to end
    the header (the stdlib starts the body there): Subject, To and Message-ID were lost
    and landed in the body. Every header that can be read is read; the bytes stay."""
    raw = (
        b"From: Alice <alice@customer.test>\nThis line has no colon\nTo: hotline@example.com\n"
        b"broken continuation line\nSubject : Printer on\nfire again\nMessage-ID: <x@y.test>\n"
        b"\nbody text\n"
    )
    m = parse(raw)
    assert (m.from_addr, m.to, m.subject, m.message_id, m.body_text) == (
        "alice@customer.test",
        ["hotline@example.com"],
        "Printer on fire again",
        "x@y.test",
        "body text",
    )
    assert m.raw == raw  # what is stored is what came; only the parser saw it mended


def test_inline_uuencoded_files_become_attachments() -> None:
    data = bytes(range(256)) * 3
    uu = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    raw = (
        b"From: a@customer.test\nTo: hotline@example.com\nSubject: scan\n\n"
        b"Here is the scan:\n\nbegin 644 scan.pdf\n" + uu + b"`\nend\n\nRegards\n"
    )
    m = parse(raw)
    assert [(a.filename, a.content_type, a.data) for a in m.attachments] == [
        ("scan.pdf", "application/pdf", data)
    ]
    assert "begin 644" not in m.body_text and m.body_text.endswith("Regards")


def test_an_attached_message_keeps_the_bytes_that_came() -> None:
    inner = (
        b"From: inner@x.test\r\nSubject: a very long subject line that a serialiser would fold"
        b" because it goes on and on well beyond seventy-eight characters\r\n\r\ninner body\r\n"
    )
    raw = (
        b"From: a@b.test\r\nTo: h@example.com\r\nSubject: fwd\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )
    [attached] = parse(raw).attachments
    assert attached.data == inner  # not refolded by a serialiser


@pytest.mark.parametrize(("encoded", "data"), [(b"QUJDR", b"ABC"), (b"QUJ!DRA=", b"ABCD")])
def test_base64_with_bad_length_or_junk_is_decoded_leniently(encoded: bytes, data: bytes) -> None:
    raw = (
        b"From: a@b.test\nTo: h@example.com\nSubject: s\n"
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n"
        b"--b\nContent-Type: application/octet-stream; name=a.bin\n"
        b"Content-Transfer-Encoding: base64\n\n" + encoded + b"\n--b--\n"
    )
    assert [a.data for a in parse(raw).attachments] == [data]


def test_multipart_without_boundary_shows_its_text() -> None:
    raw = b"From: a@b.test\nTo: h@example.com\nSubject: s\nContent-Type: multipart/mixed\n\n"
    raw += b"the text\n"
    m = parse(raw)
    assert m.body_text == "the text" and m.attachments == []


def test_an_address_only_inside_a_comment_is_kept() -> None:
    raw = b"From: a@b.test\nTo: (hotline@example.com)\nCc: Bob (bob@example.org)\nSubject: s\n\nx\n"
    m = parse(raw)
    assert (m.to, m.cc) == (["hotline@example.com"], ["bob@example.org"])
