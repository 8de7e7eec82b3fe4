"""The canonical form of a message's bytes."""

from __future__ import annotations

import pytest

from otrs_mailgate.mail.wire import canonical


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"A: b\n\nbody\n", b"A: b\r\n\r\nbody\r\n"),
        (b"A: b\r\n\r\nbody\r\n", b"A: b\r\n\r\nbody\r\n"),
        (b"A: b\r\n\nmixed\n", b"A: b\r\n\r\nmixed\r\n"),
        (b"A: b\n\nno end", b"A: b\r\n\r\nno end\r\n"),
        (b"A: b\n\nlone \r cr\n", b"A: b\r\n\r\nlone \r cr\r\n"),
        (b"", b""),
    ],
)
def test_canonical(raw: bytes, expected: bytes) -> None:
    assert canonical(raw) == expected
    assert canonical(expected) == expected  # applying it twice changes nothing


def test_canonical_form_is_returned_as_it_is() -> None:
    raw = b"A: b\r\n\r\nbody\r\n"
    assert canonical(raw) is raw  # no copy of a 25 MB mail that is fine already
