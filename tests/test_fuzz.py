"""Bad input everywhere input comes in: the MIME parser (and the pipeline behind it), the
subject tag and command parsers, the search query parser and the LMTP session.

No exception escapes, nothing takes over 5 s, memory stays bounded, and what a
mail was is kept byte for byte.  Every input that once broke something lives in
tests/fuzz/ and is replayed here; atheris (fuzz/targets.py) runs coverage-guided
on the same four entry points.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import commands
from otrs_mailgate.mail.parse import NotAMail, parse
from otrs_mailgate.mail.subject import TagFormat, strip_prefixes
from otrs_mailgate.mail.wire import canonical
from otrs_mailgate.store import searchquery
from otrs_mailgate.store.models import RawMessage

from helpers import count, mail, make_config, need
from lmtp_helpers import RawLMTP, running

HOT = "hotline@example.com"
HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "fuzz"
ROOT = HERE.parent
FAST = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


def nested(depth: int) -> bytes:
    head = b"From: a@b.test\r\nTo: hotline@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    body += b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + body


def hostile() -> dict[str, bytes]:
    """The cases the issue names, made here (a 50 MB file has no place in the repo)."""
    plain = mail("Hello", "Body text\nwith lines.")
    multipart = (
        b"From: a@b.test\r\nTo: hotline@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain'
        b"\r\n\r\nfirst\r\n--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n"
    )
    return {
        "10,000 nested parts": nested(10_000),
        "50 MB header": b"From: a@b.test\r\nTo: hotline@example.com\r\nSubject: big\r\nX-Big: "
        + b"a" * (50 * 1024 * 1024)
        + b"\r\n\r\nbody\r\n",
        "NUL bytes": plain.replace(b"Body", b"B\x00o\x00dy").replace(
            b"Subject: ", b"Subject: \x00"
        ),
        "lines without CRLF": plain.replace(b"\r\n", b"\n"),
        "bare CR lines": plain.replace(b"\r\n", b"\r"),
        "truncated MIME": multipart[: len(multipart) * 2 // 3],
        "truncated in a header": multipart[:30],
        "boundary never closed": multipart.replace(b"--XX--", b""),
        "8-bit garbage headers": (
            b"From: \xff\xfe <\x80@b.test>\r\nSubject: \xc3\x28\xa0\r\n\r\nx\r\n"
        ),
    }


@pytest.mark.parametrize("name", list(hostile()))
def test_hostile_mail_parses_fast_with_bounded_memory(name: str) -> None:
    raw = hostile()[name]
    tracemalloc.start()
    started = time.perf_counter()
    parsed = parse(raw)
    took = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert took < 5, f"{name}: {took:.1f} s"
    assert peak < 20 * 1024 * 1024 + 5 * len(raw) // 100 * 100, f"{name}: {peak} bytes"
    assert parsed.raw is raw
    if name in ("10,000 nested parts", "50 MB header"):
        assert parsed.unparsed and parsed.problem  # kept raw and flagged, never dropped


def test_hostile_mail_is_stored_byte_for_byte(pipeline: Pipeline) -> None:
    """Byte for byte in the canonical form (CRLF line ends, mail/wire.py)."""
    for name, raw in hostile().items():
        result = pipeline.deliver_one(raw, HOT)
        assert result.status == "stored", name
        with pipeline.sessions() as s:
            kept = s.query(RawMessage).filter(RawMessage.size == len(canonical(raw))).all()
        assert any(r.data == canonical(raw) for r in kept), name
    assert count(pipeline, RawMessage) == len(hostile())


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_parse_or_are_refused_as_no_mail(raw: bytes) -> None:
    try:
        parsed = parse(raw)
    except NotAMail:
        return
    assert parsed.raw == raw
    assert isinstance(parsed.subject, str) and isinstance(parsed.body_text, str)


HEADER = st.sampled_from(
    [b"From: ", b"To: ", b"Subject: ", b"Content-Type: ", b"Content-Transfer-Encoding: ",
     b"MIME-Version: 1.0", b"Message-ID: ", b"In-Reply-To: ", b"References: ",
     b"Content-Disposition: attachment; filename*0*=", b"--", b"\r\n", b"\n", b"=?utf-8?q?",
     b"=?iso-8859-1?b?", b"?=", b"multipart/mixed; boundary=", b'"X"', b"text/html",
     b"base64", b"quoted-printable", b"<a@b>", b"\x00", b"\xff", b"=C3=A4", b" "]
)  # fmt: skip


@FAST
@given(st.lists(st.one_of(HEADER, st.binary(max_size=20)), max_size=80))
def test_mime_shaped_noise(pieces: list[bytes]) -> None:
    raw = b"From: a@b.test\r\n" + b"".join(pieces)
    parsed = parse(raw)
    assert parsed.raw == raw


@FAST
@given(st.text(max_size=300))
def test_subject_tags_and_prefixes(subject: str) -> None:
    tags = TagFormat()
    for tag in tags.find(subject):
        assert tag.number.isdigit()
    built = tags.build("2026112210000014", subject)
    assert built.startswith("[Ticket#2026112210000014]")
    assert "\n" not in built and "\r" not in built
    strip_prefixes(subject)


@FAST
@given(st.text(max_size=200), st.text(max_size=500))
def test_agent_command_language(tag_commands: str, body: str) -> None:
    parsed = commands.parse(tag_commands, body)
    for command in parsed.commands:
        assert command.name in commands.VOCABULARY
    for written, reason in parsed.errors:
        assert isinstance(written, str) and reason


@FAST
@given(st.text(max_size=300))
def test_search_query_parser(source: str) -> None:
    started = time.perf_counter()
    try:
        searchquery.parse(source)
    except searchquery.QueryError as exc:
        assert 1 <= exc.position <= max(len(source), searchquery.MAX_LENGTH) + 1
    assert time.perf_counter() - started < 5


def test_lmtp_sessions_of_noise_leave_the_daemon_serving(db_url: str) -> None:
    """Random bytes, NUL bytes, bare LF, a 2 MB line, DATA without RCPT: the session may
    be refused or closed, the daemon goes on and the next proper mail is stored."""
    import random

    rng = random.Random(9)
    noise = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(25)]
    noise += [
        b"LHLO x\x00y\r\nMAIL FROM:<\x00@b>\r\n",
        b"LHLO x\nMAIL FROM:<a@b.test>\nRCPT TO:<hotline@example.com>\nDATA\nhi\n.\n",
        b"X" * (2 * 1024 * 1024) + b"\r\n",
        b"DATA\r\n\r\n.\r\n",
        b"LHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<hotline@example.com>\r\nDATA\r\n"
        + b"\x00\xff" * 1000,
    ]
    with running(make_config(db_url)) as daemon:
        port = daemon.config.lmtp.port
        for blob in noise:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.recv(1024)
                try:
                    sock.sendall(blob)
                    sock.shutdown(socket.SHUT_WR)
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline and sock.recv(65536):
                        pass
                except OSError:
                    pass  # the daemon closed on us: fine
        client = RawLMTP(port)
        client.cmd("LHLO after.test")
        _, replies = client.send("a@b.test", [HOT], mail("After the noise", "still here"))
        client.close()
        assert replies[0].startswith("250"), replies


def test_every_input_that_once_broke_something(pipeline: Pipeline) -> None:
    """tests/fuzz/: each file once crashed or hung a parser; all must pass now."""
    files = sorted(p for p in REGRESSIONS.iterdir() if p.is_file() and p.suffix != ".md")
    assert files, "tests/fuzz/ holds the regression inputs"
    for path in files:
        data = path.read_bytes()
        started = time.perf_counter()
        if path.name.startswith("query-"):
            with contextlib.suppress(searchquery.QueryError):
                searchquery.parse(data.decode("utf-8", "replace"))
        else:
            parse(data)
            pipeline.deliver_one(data, HOT)
        assert time.perf_counter() - started < 5, path.name


def test_atheris_finds_nothing_in_a_short_run(tmp_path: Path) -> None:
    """Coverage-guided fuzzing of the four entry points, 10 s each (longer by hand:
    python fuzz/targets.py TARGET -max_total_time=3600)."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        need(False, "atheris is not installed (pip install -e '.[test]' on x86_64 Linux)")
    for target in ("parse", "subject", "commands", "query"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "fuzz" / "targets.py"), target, "-max_total_time=10",
             "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/"],
            capture_output=True, timeout=120, env=dict(os.environ, PYTHONHASHSEED="0"),
        )  # fmt: skip
        tail = proc.stderr.decode(errors="replace")[-2000:]
        assert proc.returncode == 0, f"{target}: {tail}"
        assert "Done" in tail or "done" in tail, tail
