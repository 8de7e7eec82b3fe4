"""Ticket numbers: the generators and the Damm check digit.

A number never changes once given.  Every generator ends in a Damm check digit,
which catches every single-digit error and every adjacent transposition, so a
mistyped number read from a mail cannot attach it to somebody else's ticket.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

# The Damm quasigroup of order 10 (weakly totally anti-symmetric, zero diagonal).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

COUNTER_WIDTH = 5  # zero-padded; wider numbers simply grow
RANDOM_WIDTH = 10


def damm(digits: str) -> int:
    """The interim digit of the Damm algorithm; 0 for a string ending in its check digit."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def with_check_digit(digits: str) -> str:
    return digits + str(damm(digits))


def is_valid(number: str) -> bool:
    """True when number is all digits and its last digit is the right Damm digit."""
    return len(number) >= 2 and number.isascii() and number.isdigit() and damm(number) == 0


CounterFn = Callable[[str], int]
"""Returns the next value of the named counter, atomically (see db.next_counter)."""


def generate(kind: str, system_id: str, counter: CounterFn, today: dt.date) -> str:
    """A new ticket number of the configured kind.

    date:           YYYYMMDD + system id + counter of that day + check digit
    autoincrement:  system id + global counter + check digit
    random:         system id + 10 random digits + check digit (reveals no volume)
    """
    if kind == "date":
        day = today.strftime("%Y%m%d")
        body = f"{day}{system_id}{counter('date:' + day):0{COUNTER_WIDTH}d}"
    elif kind == "autoincrement":
        body = f"{system_id}{counter('autoincrement'):0{COUNTER_WIDTH}d}"
    elif kind == "random":
        body = f"{system_id}{secrets.randbelow(10**RANDOM_WIDTH):0{RANDOM_WIDTH}d}"
    else:
        raise ValueError(f"unknown ticket number generator {kind!r}")
    return with_check_digit(body)
