"""The canonical form of a message's bytes: every line ends in CRLF, the last one too.

Mail reaches us with CRLF over LMTP and with bare LF from Postfix's pipe(8) or an
mbox; stored as it came, the same message would be two different byte strings. So
every entry hands the pipeline its bytes in this form (ingest/pipeline.py applies
it once for all), and what is stored, hashed and shown is the same whichever way a
mail arrived. A lone CR (no LF after it) is data and stays. Standard library only:
the pipe client uses it before it speaks LMTP, which wants CRLF anyway.
"""

from __future__ import annotations

import re

_BARE_LF = re.compile(rb"(?<!\r)\n")


def canonical(raw: bytes) -> bytes:
    """raw with every bare LF made CRLF and a CRLF after the last line."""
    if raw.count(b"\n") != raw.count(b"\r\n"):
        raw = _BARE_LF.sub(b"\r\n", raw)
    if raw and not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw
