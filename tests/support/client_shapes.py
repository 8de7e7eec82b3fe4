"""Agents' replies to our notification in the shapes real mail clients give them.

Each builder takes the notification (as the agent's client received it) and the
agent's answer and returns the reply's bytes the way that client writes them: where
the answer goes (above, below, between), how the original is quoted (`> `, a
blockquote, Outlook's header block with the original unquoted, an attached
original), the attribution line in the client's language, format=flowed, HTML
only, signatures.  The forms follow the clients' own output as public test fixtures
of other projects show it (mailgun/talon's standard_replies and html_replies,
github/email_reply_parser's and alfonsrv/mail-parser-reply's test emails), written
anew here.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime

AGENT = "alice@agents.test"


@dataclass(frozen=True)
class Notification:
    subject: str  # the notification's subject, [Ticket#N] ...
    message_id: str
    reply_to: str  # the token address
    text: str  # its text/plain body
    sender: str = "hotline@example.com"
    sender_name: str = "Hotline (otrs-mailgate)"


def quoted(text: str, prefix: str = "> ") -> str:
    return "\n".join((prefix + line).rstrip() for line in text.rstrip("\n").split("\n"))


def html_lines(text: str) -> str:
    return "<br>\n".join(html.escape(line) for line in text.rstrip("\n").split("\n"))


def _message(
    n: Notification,
    *,
    body: str = "",
    subtype: str = "plain",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Alice Agent <{AGENT}>"
    msg["To"] = n.reply_to
    msg["Subject"] = f"Re: {n.subject}"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@agents.test>"
    msg["In-Reply-To"] = f"<{n.message_id}>"
    msg["References"] = f"<{n.message_id}>"
    for name, value in (headers or {}).items():
        msg[name] = value
    if body:
        msg.set_content(body, subtype=subtype)
    return msg


def _alternative(n: Notification, text: str, html_body: str) -> bytes:
    msg = _message(n, body=text)
    msg.add_alternative(html_body, subtype="html")
    return msg.as_bytes()


WHEN = "Mon, Dec 7, 2026 at 1:47 AM"


# -- top-posting, quoted with ">" -----------------------------------------------------------


def gmail_en(n: Notification, answer: str) -> bytes:
    attribution = f"On {WHEN} {n.sender_name} <{n.sender}> wrote:"
    text = f"{answer}\n\n{attribution}\n\n{quoted(n.text)}\n"
    html_body = (
        f'<div dir="ltr">{html_lines(answer)}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{html.escape(attribution)}<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px '
        f'solid rgb(204,204,204);padding-left:1ex">{html_lines(n.text)}</blockquote></div>'
    )
    return _alternative(n, text, html_body)


def apple_mail_fr(n: Notification, answer: str) -> bytes:
    # Apple Mail quotes its attribution line with the rest
    attribution = f"Le 7 déc. 2026 à 01:47, {n.sender_name} <{n.sender}> a écrit :"
    return _message(
        n, body=f"{answer}\n\n{quoted(attribution + chr(10) + chr(10) + n.text)}\n"
    ).as_bytes()


def iphone_es(n: Notification, answer: str) -> bytes:
    attribution = f"El 7 dic 2026, a las 1:47, {n.sender_name} <{n.sender}> escribió:"
    body = f"{answer}\n\nEnviado desde mi iPhone\n\n{attribution}\n\n{quoted(n.text)}\n"
    return _message(n, body=body).as_bytes()


def android_gmail_it(n: Notification, answer: str) -> bytes:
    attribution = f"Il lun 7 dic 2026, 01:47 {n.sender_name} <{n.sender}> ha scritto:"
    return _message(n, body=f"{answer}\n\n{attribution}\n\n{quoted(n.text)}\n").as_bytes()


def gmail_nl(n: Notification, answer: str) -> bytes:
    attribution = f"Op ma 7 dec. 2026 om 01:47 schreef {n.sender_name} <{n.sender}>:"
    return _message(n, body=f"{answer}\n\n{attribution}\n\n{quoted(n.text)}\n").as_bytes()


def gmail_ru(n: Notification, answer: str) -> bytes:
    attribution = f"пн, 7 дек. 2026 г. в 01:47, {n.sender_name} <{n.sender}>:"
    return _message(n, body=f"{answer}\n\n{attribution}\n\n{quoted(n.text)}\n").as_bytes()


def yandex_ru(n: Notification, answer: str) -> bytes:
    attribution = f'07.12.2026, 01:47, "{n.sender_name}" <{n.sender}>:'
    return _message(n, body=f"{answer}\n\n{attribution}\n{quoted(n.text)}\n").as_bytes()


def gmail_ja(n: Notification, answer: str) -> bytes:
    attribution = f"2026年12月7日(月) 1:47 {n.sender_name} <{n.sender}>:"
    return _message(n, body=f"{answer}\n\n{attribution}\n\n{quoted(n.text)}\n").as_bytes()


def sparrow_en(n: Notification, answer: str) -> bytes:
    body = (
        f"{answer}\n\n-- \nAlice Agent\nSent with Sparrow (http://www.sparrowmailapp.com)\n\n"
        f"On Monday, 7 December 2026 at 01:47, {n.sender_name} wrote:\n\n{quoted(n.text)}\n"
    )
    return _message(n, body=body).as_bytes()


def thunderbird_flowed_en(n: Notification, answer: str) -> bytes:
    """format=flowed: long lines broken at 72 columns with a trailing space."""
    flowed = []
    for paragraph in answer.split("\n"):
        words, line = paragraph.split(" "), ""
        for word in words:
            if line and len(line) + len(word) > 70:
                flowed.append(line + " ")
                line = word
            else:
                line = f"{line} {word}" if line else word
        flowed.append(line)
    body = "\n".join(flowed) + f"\n\nOn 12/7/26 1:47 AM, {n.sender_name} wrote:\n{quoted(n.text)}\n"
    msg = _message(n, body=body)
    msg.set_param("format", "flowed")
    return msg.as_bytes()


# -- bottom-posting -----------------------------------------------------------------------


def thunderbird_bottom_de(n: Notification, answer: str) -> bytes:
    body = (
        f"Am 07.12.26 um 01:47 schrieb {n.sender_name}:\n{quoted(n.text)}\n\n"
        f"{answer}\n\n-- \nAlice Agent\nHotline, Durchwahl -42\n"
    )
    return _message(n, body=body).as_bytes()


def thunderbird_bottom_html_en(n: Notification, answer: str) -> bytes:
    """Thunderbird composing HTML, reply below the quote, its signature block."""
    html_body = (
        "<html><body>"
        f'<div class="moz-cite-prefix">On 12/7/26 1:47 AM, {html.escape(n.sender_name)} wrote:<br>'
        f'</div><blockquote type="cite" cite="mid:{n.message_id}"><pre class="moz-quote-pre" '
        f'wrap="">{html.escape(n.text)}</pre></blockquote><p>{html_lines(answer)}</p>'
        '<div class="moz-signature">-- <br>Alice Agent<br>Hotline</div></body></html>'
    )
    return _message(n, body=html_body, subtype="html").as_bytes()


def mutt_bottom_with_commands_de(n: Notification, answer: str) -> bytes:
    """Bottom-posted, command lines at the top of the agent's own text."""
    body = (
        f"* {n.sender_name} <{n.sender}> [07.12.26 01:47]:\n{quoted(n.text)}\n\n"
        f"Pending: 3d\n\n{answer}\n"
    )
    return _message(n, body=body).as_bytes()


# -- interleaved ----------------------------------------------------------------------------


def interleaved_en(n: Notification, answers: tuple[str, str], lines: tuple[str, str]) -> bytes:
    """mutt style: the agent's answers each below the customer's line they answer."""
    head, _, rest = n.text.partition(lines[0])
    middle, _, tail = rest.partition(lines[1])
    second = middle.lstrip("\n") + lines[1]
    body = (
        f"On Mon, Dec 07, 2026 at 01:47:00AM +0000, {n.sender_name} wrote:\n"
        f"{quoted(head + lines[0])}\n\n{answers[0]}\n\n{quoted(second)}"
        f"\n\n{answers[1]}\n\n{quoted(tail.strip(chr(10)))}\n"
    )
    return _message(n, body=body).as_bytes()


# -- Outlook and its kin: a header block, the original unquoted ------------------------------


def _outlook(n: Notification, answer: str, header: str, separator: str = "") -> str:
    lead = f"{separator}\n" if separator else ""
    return f"{answer}\n\n{lead}{header}\n\n{n.text}\n"


def outlook_en(n: Notification, answer: str) -> bytes:
    header = (
        f"From: {n.sender_name} <{n.sender}>\nSent: Monday, December 7, 2026 1:47 AM\n"
        f"To: Alice Agent <{AGENT}>\nSubject: {n.subject}"
    )
    text = _outlook(n, answer, header, "________________________________")
    html_body = (
        '<html><body><div class="WordSection1"><p class="MsoNormal">'
        f'{html_lines(answer)}<o:p></o:p></p><div><div style="border:none;border-top:solid '
        '#E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> '
        f"{html.escape(n.sender_name)} &lt;{n.sender}&gt; <br><b>Sent:</b> Monday, December 7, "
        f"2026 1:47 AM<br><b>To:</b> Alice Agent &lt;{AGENT}&gt;<br><b>Subject:</b> "
        f'{html.escape(n.subject)}</p></div></div><p class="MsoNormal">{html_lines(n.text)}</p>'
        "</div></body></html>"
    )
    return _alternative(n, text, html_body)


def outlook_de(n: Notification, answer: str) -> bytes:
    header = (
        f"Von: {n.sender_name} <{n.sender}>\nGesendet: Montag, 7. Dezember 2026 01:47\n"
        f"An: Alice Agent <{AGENT}>\nBetreff: {n.subject}"
    )
    return _message(
        n, body=_outlook(n, answer, header, "-----Ursprüngliche Nachricht-----")
    ).as_bytes()


def outlook_nl(n: Notification, answer: str) -> bytes:
    header = (
        f"Van: {n.sender_name} <{n.sender}>\nVerzonden: maandag 7 december 2026 01:47\n"
        f"Aan: Alice Agent <{AGENT}>\nOnderwerp: {n.subject}"
    )
    return _message(n, body=_outlook(n, answer, header)).as_bytes()


def outlook_ru(n: Notification, answer: str) -> bytes:
    header = (
        f"От: {n.sender_name} <{n.sender}>\nОтправлено: 7 декабря 2026 г. 1:47\n"
        f"Кому: Alice Agent <{AGENT}>\nТема: {n.subject}"
    )
    return _message(n, body=_outlook(n, answer, header)).as_bytes()


def outlook_zh(n: Notification, answer: str) -> bytes:
    header = (
        f"发件人: {n.sender_name} <{n.sender}>\n发送时间: 2026年12月7日 1:47\n"
        f"收件人: Alice Agent <{AGENT}>\n主题: {n.subject}"
    )
    return _message(n, body=_outlook(n, answer, header)).as_bytes()


def outlook_mac_fr(n: Notification, answer: str) -> bytes:
    header = (
        f"De : {n.sender_name} <{n.sender}>\nDate : lundi 7 décembre 2026 à 01:47\n"
        f"À : Alice Agent <{AGENT}>\nObjet : {n.subject}"
    )
    return _message(n, body=_outlook(n, answer, header)).as_bytes()


def yahoo_en(n: Notification, answer: str) -> bytes:
    header = (
        f'From: "{n.sender_name}" <{n.sender}>\nTo: Alice Agent <{AGENT}>\n'
        f"Sent: Monday, December 7, 2026 1:47 AM\nSubject: {n.subject}"
    )
    return _message(
        n, body=_outlook(n, answer, header, "\n----- Original Message -----")
    ).as_bytes()


def aol_en(n: Notification, answer: str) -> bytes:
    header = (
        f"From: {n.sender_name} <{n.sender}>\nTo: Alice Agent <{AGENT}>\n"
        f"Sent: Mon, Dec 7, 2026 1:47 am\nSubject: {n.subject}"
    )
    return _message(
        n, body=_outlook(n, answer, header, "\n\n-----Original Message-----")
    ).as_bytes()


def hotmail_html_en(n: Notification, answer: str) -> bytes:
    html_body = (
        f"<html><body class='hmmessage'><div dir='ltr'>{html_lines(answer)}<br><br><div>"
        '<hr id="stopSpelling">Date: Mon, 7 Dec 2026 01:47:00 +0000<br>'
        f"Subject: {html.escape(n.subject)}<br>From: {n.sender}<br>To: {AGENT}<br><br>"
        f'<div dir="ltr">{html_lines(n.text)}</div></div></div></body></html>'
    )
    return _message(n, body=html_body, subtype="html").as_bytes()


def windows_mail_ru_html(n: Notification, answer: str) -> bytes:
    html_body = (
        '<html><body dir="ltr"><div dir="ltr">'
        f'<div>{html_lines(answer)}</div><div data-signatureblock="true"><div><br></div></div>'
        '<div style="padding-top: 5px; border-top-color: rgb(229, 229, 229); border-top-width: '
        '1px; border-top-style: solid;"><div><font><b>От:</b>&nbsp;<a href="mailto:'
        f'{n.sender}">{html.escape(n.sender_name)}</a><br><b>Отправлено:</b>&nbsp;понедельник, '
        f'7 декабря 2026 г. 1:47<br><b>Кому:</b>&nbsp;<a href="mailto:{AGENT}">Alice</a></font>'
        f"</div></div><div><br></div><div>{html_lines(n.text)}</div></div></body></html>"
    )
    return _message(n, body=html_body, subtype="html").as_bytes()


def mailru_ru_html(n: Notification, answer: str) -> bytes:
    html_body = (
        f"<HTML><BODY><p>{html_lines(answer)}</p><br><br>"
        f"Понедельник, 7 декабря 2026, 1:47 +03:00 от {html.escape(n.sender_name)} "
        f'&lt;{n.sender}&gt;:<br>\n<blockquote style="border-left:1px solid #0857A6; '
        f'margin:10px; padding:0 0 0 10px;"><div>{html_lines(n.text)}</div></blockquote>'
        "<br></BODY></HTML>"
    )
    return _message(n, body=html_body, subtype="html").as_bytes()


def outlook_attach_original_en(n: Notification, answer: str, original: bytes) -> bytes:
    """Outlook's "attach original message": the answer, the notification attached."""
    msg = _message(n, body=f"{answer}\n")
    from email import message_from_bytes, policy

    msg.add_attachment(message_from_bytes(original, policy=policy.default))
    return msg.as_bytes()


def html_only_no_attribution(n: Notification, answer: str) -> bytes:
    """An HTML reply with a bare blockquote of the customer's words: no attribution line,
    no marker (a web mailer that quotes only what was selected)."""
    start = n.text.find("It still burns")
    excerpt = n.text[start:].split("\n\n")[0]
    html_body = (
        f"<html><body><div>{html_lines(answer)}</div>"
        f"<blockquote>{html_lines(excerpt)}</blockquote></body></html>"
    )
    return _message(n, body=html_body, subtype="html").as_bytes()


Builder = Callable[[Notification, str], bytes]

# (name, language, builder, where the answer is) for the one-answer shapes
SHAPES: list[tuple[str, str, Builder]] = [
    ("gmail-en-top-alternative", "en", gmail_en),
    ("apple-mail-fr-top", "fr", apple_mail_fr),
    ("iphone-es-top-sent-from", "es", iphone_es),
    ("android-gmail-it-top", "it", android_gmail_it),
    ("gmail-nl-top", "nl", gmail_nl),
    ("gmail-ru-top", "ru", gmail_ru),
    ("yandex-ru-top", "ru", yandex_ru),
    ("gmail-ja-top", "ja", gmail_ja),
    ("sparrow-en-top-signature", "en", sparrow_en),
    ("thunderbird-en-flowed", "en", thunderbird_flowed_en),
    ("thunderbird-de-bottom", "de", thunderbird_bottom_de),
    ("thunderbird-en-bottom-html", "en", thunderbird_bottom_html_en),
    ("outlook-en-top-alternative", "en", outlook_en),
    ("outlook-de-top", "de", outlook_de),
    ("outlook-nl-top", "nl", outlook_nl),
    ("outlook-ru-top", "ru", outlook_ru),
    ("outlook-zh-top", "zh", outlook_zh),
    ("outlook-mac-fr-top", "fr", outlook_mac_fr),
    ("yahoo-en-top", "en", yahoo_en),
    ("aol-en-top", "en", aol_en),
    ("hotmail-en-html", "en", hotmail_html_en),
    ("windows-mail-ru-html", "ru", windows_mail_ru_html),
    ("mail-ru-ru-html", "ru", mailru_ru_html),
]
