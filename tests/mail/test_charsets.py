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


# -- issue 25: 7-bit charsets, short texts, x-uuencode ---------------------------------------


def _iconv(text: str, charset: str) -> bytes:
    """Bytes as another program writes them: glibc's iconv for what Python cannot encode."""
    import subprocess

    done = subprocess.run(
        ["iconv", "-f", "UTF-8", "-t", charset], input=text.encode(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


SEVEN_BIT = [
    ("ISO-2022-JP", "テスト 日本語のメール", lambda t: t.encode("iso2022_jp")),
    ("ISO-2022-KR", "한국어 시험 메일", lambda t: t.encode("iso2022_kr")),
    ("ISO-2022-CN", "中文测试 简体邮件", lambda t: _iconv(t, "ISO-2022-CN")),
    ("HZ-GB-2312", "中文测试 简体邮件", lambda t: t.encode("hz")),
    ("UTF-7", "Grüße aus Köln €", lambda t: t.encode("utf-7")),
]


@pytest.mark.parametrize(("label", "text", "encode"), SEVEN_BIT, ids=[s[0] for s in SEVEN_BIT])
def test_seven_bit_charsets_in_subject_name_filename_and_body(label, text, encode) -> None:
    """Issue 25, item 2: every byte of these is ASCII, and that was taken for ASCII text
    (`$B%F%9%H (B`).  Each is read by its own codec wherever it is declared."""
    import base64
    import urllib.parse

    data = encode(text)
    assert data.isascii()
    word = f"=?{label}?B?{base64.b64encode(data).decode()}?="
    rfc2231 = urllib.parse.quote(data + b".txt", safe=".")
    raw = (
        (
            f"From: {word} <sender@customer.test>\nTo: hotline@example.com\nSubject: {word}\n"
            'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
            f"--b\nContent-Type: text/plain; charset={label}\nContent-Transfer-Encoding: 7bit\n\n"
        ).encode()
        + data
        + (
            "\n--b\nContent-Type: text/plain\n"
            f"Content-Disposition: attachment; filename*={label}''{rfc2231}\n\nfile\n--b--\n"
        ).encode()
    )
    m = parse(raw)
    assert m.subject == text
    assert m.from_name == text
    assert m.body_text == text
    assert [a.filename for a in m.attachments] == [text + ".txt"]


def test_an_unlabelled_iso_2022_jp_body_is_read_by_its_escapes() -> None:
    body = "お世話になっております。テストです。".encode("iso2022_jp")
    assert parse(_mail(b"Subject: t\n", body)).body_text == "お世話になっております。テストです。"


def test_iso_2022_jp_with_jis_x_0213_characters_is_read_by_a_wider_form() -> None:
    text = "﨑山 ① 丏"  # JIS X 0213 (ESC $ ( Q), which mail labels ISO-2022-JP all the same
    data = text.encode("iso2022_jp_2004")
    ctype = b"Content-Type: text/plain; charset=ISO-2022-JP\n"
    assert parse(_mail(b"Subject: t\n" + ctype, data)).body_text == text


def test_a_short_unlabelled_text_is_read_as_the_rest_of_its_mail() -> None:
    """A four-letter KOI8-R body is too short to detect (chardetng says Greek); its raw
    subject is read as KOI8-R, so the body is too."""
    raw = _mail("Subject: тест письма\n".encode("koi8-r"), "ТЕСТ".encode("koi8-r"))
    m = parse(raw)
    assert (m.subject, m.body_text) == ("тест письма", "ТЕСТ")


def test_x_uuencode_parts_without_a_begin_line() -> None:
    import binascii

    payload = b"The file's own bytes \x00\x01\x02, longer than one line of uuencode." * 2
    lines = [binascii.b2a_uu(payload[i : i + 45]) for i in range(0, len(payload), 45)]
    for cte, begin in (("x-uuencode", b""), ("uuencode", b"begin 644 data.bin\n"), ("x-uue", b"")):
        raw = (
            b"From: x@customer.test\nTo: hotline@example.com\nSubject: uu\n"
            b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
            b"see the file\n--b\nContent-Type: application/octet-stream; name=data.bin\n"
            + f"Content-Transfer-Encoding: {cte}\n\n".encode()
            + begin
            + b"".join(lines)
            + b"`\nend\n--b--\n"
        )
        [part] = parse(raw).attachments
        assert part.data == payload, cte


def test_a_japanese_mail_is_filed_and_answered_in_japanese(pipeline) -> None:
    """Through the pipeline: ticket title, article text and the acknowledgement's subject
    carry the Japanese text, not its escape codes."""
    import base64

    from sqlalchemy import select

    from otrs_mailgate.store.models import Article, Ticket

    from helpers import outbox_mails

    subject = "=?ISO-2022-JP?B?" + base64.b64encode("請求書について".encode("iso2022_jp")).decode()
    raw = _mail(
        f"Subject: {subject}?=\nContent-Type: text/plain; charset=iso-2022-jp\n".encode(),
        "請求書が届いていません。".encode("iso2022_jp"),
    )
    number = pipeline.deliver_one(raw, "hotline@example.com").ticket_number
    with pipeline.sessions() as s:
        title = s.execute(select(Ticket.title).where(Ticket.number == number)).scalar_one()
        text = s.execute(select(Article.body_text)).scalar_one()
    assert (title, text) == ("請求書について", "請求書が届いていません。")
    [ack] = outbox_mails(pipeline)
    assert str(ack["Subject"]) == f"[Ticket#{number}] 請求書について"


def test_a_label_python_has_no_codec_for_is_read_by_iconv() -> None:
    """VISCII (Vietnamese) and ARMSCII-8 (Armenian): glibc knows them, Python does not."""
    for label, text in (("VISCII", "Tiếng Việt thử nghiệm"), ("ARMSCII-8", "Բարեւ աշխարհ")):
        data = _iconv(text, label)
        ctype = f"Content-Type: text/plain; charset={label}\n".encode()
        assert parse(_mail(b"Subject: t\n" + ctype, data)).body_text == text, label
