"""Text from bytes whose charset label is missing, wrong or too narrow, as mail readers
and browsers decode it.

A label is read as the superset real senders mean by it (the WHATWG Encoding
Standard's mapping: gb2312 is GBK is gb18030, iso-8859-1 and us-ascii are
windows-1252, ks_c_5601 is windows-949, shift_jis is windows-31J, ...). Where there
is no label, or the bytes do not fit it, the bytes are detected with chardetng
(Firefox's detector, for exactly this: legacy text of unknown encoding) before
falling back. Valid UTF-8 under a single-byte label is UTF-8: that is the common lie.
Nothing here returns U+FFFD while a decoding that fits the bytes exists.

7-bit encodings (ISO-2022-JP/-KR/-CN, HZ, UTF-7) are all ASCII bytes: a label that
names one is always decoded with it (ISO-2022-CN through glibc's iconv, which Python
has no codec for), and unlabelled ASCII with ISO 2022 escape sequences is read as
the one they announce.  A text too short to detect (a four-letter KOI8-R body) is
read as what the rest of its mail was detected as (Sample, kept by parse.py).
"""

from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import functools
import re

from chardetng_py import EncodingDetector, detect

SUPERSETS = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "latin5": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "x-mac-cyrillic": "mac_cyrillic",
    "koi8-r": "koi8_u",  # KOI8-U adds a few letters where KOI8-R has box drawing
}
# Labels under which valid UTF-8 is UTF-8 after all (a client that wrote UTF-8 and said
# something else, or said nothing).
_SINGLE_BYTE = {"us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin1", "latin-1",
                "iso-8859-15", "windows-1252", "cp1252", ""}  # fmt: skip


# Codecs whose every byte is ASCII: a label naming one is read with it, ASCII or not.
SEVEN_BIT = frozenset(
    {"iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3",
     "iso2022_jp_ext", "iso2022_kr", "hz", "utf-7"}
)  # fmt: skip
ICONV_ONLY = {"iso-2022-cn": "ISO-2022-CN-EXT", "iso-2022-cn-ext": "ISO-2022-CN-EXT",
              "csiso2022cn": "ISO-2022-CN-EXT"}  # fmt: skip
_ESC = b"\x1b"
# The wider forms tried when the bytes outgrow the one a label names (JIS X 0212 and
# 0213 characters in mail that says ISO-2022-JP).
_JP_FAMILY = ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3")
SHORT = 64  # non-ASCII bytes: fewer, and a text is read as the rest of its mail
# A label Python has no codec for is asked of glibc's iconv, which knows more (VISCII,
# ARMSCII-8, TCVN, the ISO-2022-CN forms) when it looks like a charset name.
_ICONV_NAME = re.compile(r"[a-z0-9][a-z0-9_.:+-]{1,39}")


@functools.lru_cache(maxsize=256)
def codec(label: str | None) -> str | None:
    """The Python codec to read a label with (its superset), None when unknown."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode(
    data: bytes, label: str | None = None, tld: str | None = None, hint: str | None = None
) -> str:
    """Text of data, labelled `label` (or not); `tld` (of the sender's domain) and `hint`
    (what the rest of the mail was detected as) help with text too short to tell."""
    name = (label or "").strip().strip('"').lower()
    if data.isascii():
        return _seven_bit(data, name) or data.decode("ascii")
    if name in _SINGLE_BYTE or name in ("utf-8", "utf8"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    known = codec(label)
    if known is not None:
        try:
            return data.decode(known)
        except UnicodeDecodeError:
            pass
    elif name in ICONV_ONLY or _ICONV_NAME.fullmatch(name):  # VISCII, ARMSCII-8, ...
        text = iconv(data, ICONV_ONLY.get(name, name))
        if text is not None and "\ufffd" not in text:
            return text
    return guess(data, tld, hint)


def _seven_bit(data: bytes, name: str) -> str | None:
    """ASCII bytes in a 7-bit encoding: the one the label names, or (no such label) the
    one ISO 2022 escape sequences announce; None for plain ASCII."""
    known = codec(name)
    if name in ICONV_ONLY:
        return iconv(data, ICONV_ONLY[name])
    if known is None and _ESC in data and _ICONV_NAME.fullmatch(name):
        text = iconv(data, name)
        if text is not None and "\ufffd" not in text:
            return text
    if known in SEVEN_BIT:
        for candidate in (known, *(_JP_FAMILY if known.startswith("iso2022_jp") else ())):
            try:
                return data.decode(candidate)
            except UnicodeDecodeError:
                continue
        return None
    if _ESC not in data:
        return None
    if b"\x1b$)C" in data:
        candidates: tuple[str, ...] = ("iso2022_kr",)
    elif b"\x1b$)A" in data or b"\x1b$)G" in data or b"\x1b$*H" in data:
        return iconv(data, "ISO-2022-CN-EXT")
    elif b"\x1b$" in data or b"\x1b(" in data:
        candidates = _JP_FAMILY
    else:
        return None
    for candidate in candidates:
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    return None


def guess(data: bytes, tld: str | None = None, hint: str | None = None) -> str:
    """Text of 8-bit data with no usable label: UTF-8 if it is; for a short text what
    the rest of its mail was detected as (`hint`); else what chardetng says, else
    windows-1252, else Latin-1 (which fits any bytes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    found = None
    if hint and sum(1 for b in data if b > 127) < SHORT:
        found = hint
    if found is None:
        hint_tld = tld.encode("ascii", "ignore").lower() if tld else None
        try:
            found = codec(detect(data, allow_utf8=False, tld=hint_tld or None))
        except (ValueError, TypeError):  # a tld chardetng refuses: ask without one
            found = codec(detect(data, allow_utf8=False))
    for name in (found, "cp1252"):
        if name:
            try:
                return data.decode(name)
            except UnicodeDecodeError:
                continue
    return data.decode("latin-1")


class Sample:
    """The 8-bit texts of one mail that carry no usable label, fed to one detector: what
    it says of all of them together is the hint for each (issue 25: a four-letter body
    was detected as Greek while its subject read as KOI8-R)."""

    def __init__(self) -> None:
        self._detector: EncodingDetector | None = None

    def feed(self, data: bytes) -> None:
        if data.isascii():
            return
        try:
            data.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
        if self._detector is None:
            self._detector = EncodingDetector()
        self._detector.feed(data + b"\n", last=False)  # apart: no byte pair across two

    def guess(self) -> str | None:
        """The codec for the mail's unlabelled texts, None when there were none."""
        if self._detector is None:
            return None
        self._detector.feed(b"", last=True)
        return codec(self._detector.guess(tld=None, allow_utf8=False))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.iconv_open.restype = ctypes.c_void_p
    lib.iconv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.iconv.restype = ctypes.c_size_t
    lib.iconv.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_void_p),
                                              ctypes.POINTER(ctypes.c_size_t)] * 2  # fmt: skip
    lib.iconv_close.argtypes = [ctypes.c_void_p]
    return lib


def iconv(data: bytes, encoding: str) -> str | None:
    """data decoded by the C library's iconv (ISO-2022-CN, which Python has no codec
    for), a byte it cannot read shown as U+FFFD; None when iconv lacks the encoding."""
    lib = _libc()
    if lib is None:
        return None
    cd = lib.iconv_open(b"UTF-8", encoding.encode("ascii"))
    if cd in (None, ctypes.c_void_p(-1).value):
        return None
    try:
        source = ctypes.create_string_buffer(data, len(data))
        target = ctypes.create_string_buffer(len(data) * 4 + 16)
        src = ctypes.c_void_p(ctypes.addressof(source))
        src_left = ctypes.c_size_t(len(data))
        out = bytearray()
        while src_left.value:
            dst = ctypes.c_void_p(ctypes.addressof(target))
            dst_left = ctypes.c_size_t(len(target))
            done = lib.iconv(cd, ctypes.byref(src), ctypes.byref(src_left),
                             ctypes.byref(dst), ctypes.byref(dst_left))  # fmt: skip
            out += target.raw[: len(target) - dst_left.value]
            if done != ctypes.c_size_t(-1).value:
                break
            out += "\ufffd".encode()  # a byte it cannot read (glibc fails some CNS 11643)
            src.value = (src.value or 0) + 1
            src_left.value -= 1
        return out.decode("utf-8", "replace")
    finally:
        lib.iconv_close(cd)
