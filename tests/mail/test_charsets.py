"""Charsets that are missing or lie (issue 18): decoded as mail readers decode them."""

from __future__ import annotations

import pytest

from otrs_mailgate.mail.charsets import codec, decode
from otrs_mailgate.mail.parse import parse


def _mail(headers: bytes, body: bytes) -> bytes:
    return b"From: x@customer.test\nTo: hotline@example.com\n" + headers + b"\n" + body


@pytest.mark.parametrize(
    ("label", "superset"),
    [
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("iso-8859-1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("ks_c_5601-1987", "cp949"),
        ("shift_jis", "cp932"),
        ("iso-2022-jp", "iso2022_jp_ext"),
        ("big5", "big5hkscs"),
        ("no-such-charset", None),
    ],
)
def test_labels_read_as_their_supersets(label: str, superset: str | None) -> None:
    assert codec(label) == superset


@pytest.mark.parametrize(
    ("text", "encoding", "label"),
    [
        ("Håvard wrote", "latin-1", None),  # 8-bit, no charset at all
        ("Håvard wrote", "utf-8", "us-ascii"),  # UTF-8 that says it is ASCII
        ("Grüße aus Köln – schöne Woche", "cp1252", "iso-8859-1"),  # cp1252 dash
        ("测试邮件，请回复。镕", "gbk", "gb2312"),  # 镕 is GBK, not GB2312
        ("안녕하세요 똠방각하", "cp949", "ks_c_5601-1987"),  # 똠 is only in cp949
        ("こんにちは ①②", "cp932", "shift_jis"),  # NEC circled digits
        ("Привет, это тест", "koi8-r", None),
        ("Привет, это тест", "cp1251", "utf-8"),  # a label that lies outright
    ],
)
def test_body_text_is_never_replacement_characters(
    text: str, encoding: str, label: str | None
) -> None:
    ctype = b"Content-Type: text/plain" + (f"; charset={label}".encode() if label else b"") + b"\n"
    m = parse(_mail(b"Subject: t\n" + ctype, text.encode(encoding)))
    assert m.body_text == text
    assert decode(text.encode(encoding), label) == text


def test_raw_8bit_koi8_subject_without_content_type() -> None:
    m = parse(_mail("Subject: тест\n".encode("koi8-r"), "тело письма".encode("koi8-r")))
    assert m.subject == "тест" and m.body_text == "тело письма"


def test_raw_8bit_and_rfc2231_filenames() -> None:
    raw = (
        b"From: x@customer.test\nTo: hotline@example.com\nSubject: files\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        b"--b\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="Gr\xfc\xdfe.pdf"\n\n%PDF\n'
        b"--b\nContent-Type: application/pdf\n"
        b"Content-Disposition: attachment; filename*=gb2312''%B2%E2%CA%D4%E9F.pdf\n\n%PDF\n"
        b"--b--\n"
    )
    names = [a.filename for a in parse(raw).attachments]
    assert names == ["Grüße.pdf", "测试镕.pdf"]


def test_encoded_words_with_a_narrow_label() -> None:
    word = "=?gb2312?B?" + __import__("base64").b64encode("镕".encode("gbk")).decode() + "?="
    m = parse(_mail(f"Subject: {word}\n".encode(), b"x"))
    assert m.subject == "镕"


def test_the_search_index_sees_the_decoded_text(pipeline) -> None:
    from otrs_mailgate.tickets import queries

    raw = _mail("Subject: тест\n".encode("koi8-r"), "Принтер сломался совсем".encode("koi8-r"))
    number = pipeline.deliver_one(raw, "hotline@example.com").ticket_number
    with pipeline.sessions() as s:
        rows, _ = queries.results(s, pipeline.config, "сломался", 10)
    assert [r["number"] for r in rows] == [number]
