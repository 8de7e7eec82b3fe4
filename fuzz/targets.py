"""Coverage-guided fuzzing (atheris, libFuzzer) of where outside input comes in:

    python fuzz/targets.py parse|subject|commands|query [libFuzzer options]

e.g. `-max_total_time=3600 -rss_limit_mb=2048`.  An exception other than the
documented refusals (NotAMail, QueryError) or a hang is a finding: libFuzzer
writes the input to crash-*/timeout-*; copy it into tests/fuzz/ (query inputs as
query-<name>) so tests/test_fuzz.py replays it forever after.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from otrs_mailgate.mail import commands
    from otrs_mailgate.mail.parse import NotAMail, parse
    from otrs_mailgate.mail.subject import TagFormat, strip_prefixes
    from otrs_mailgate.store import searchquery

TAGS = TagFormat()


def fuzz_parse(data: bytes) -> None:
    try:
        parsed = parse(data)
    except NotAMail:
        return
    assert parsed.raw is data


def fuzz_subject(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    TAGS.find(text)
    assert TAGS.build("2026112210000014", text).startswith("[Ticket#")
    strip_prefixes(text)


def fuzz_commands(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    tag = fdp.ConsumeUnicodeNoSurrogates(64)
    body = fdp.ConsumeUnicodeNoSurrogates(len(data))
    commands.parse(tag, body)


def fuzz_query(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        query = searchquery.parse(text)
    except searchquery.QueryError:
        return
    if query.text is not None:
        from otrs_mailgate.store import search

        search._fts5(query.text)


TARGETS = {
    "parse": fuzz_parse,
    "subject": fuzz_subject,
    "commands": fuzz_commands,
    "query": fuzz_query,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(TARGETS)} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
