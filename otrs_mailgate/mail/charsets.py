"""Text from bytes whose charset label is missing, wrong or too narrow, as mail readers
and browsers decode it.

A label is read as the superset real senders mean by it (the WHATWG Encoding
Standard's mapping: gb2312 is GBK is gb18030, iso-8859-1 and us-ascii are
windows-1252, ks_c_5601 is windows-949, shift_jis is windows-31J, ...). Where there
is no label, or the bytes do not fit it, the bytes are detected with chardetng
(Firefox's detector, for exactly this: legacy text of unknown encoding) before
falling back. Valid UTF-8 under a single-byte label is UTF-8: that is the common lie.
Nothing here returns U+FFFD while a decoding that fits the bytes exists.
"""

from __future__ import annotations

import codecs
import functools

from chardetng_py import detect

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


def decode(data: bytes, label: str | None = None, tld: str | None = None) -> str:
    """Text of data, labelled `label` (or not); `tld` (of the sender's domain) helps the
    detector with text too short to tell by itself."""
    if data.isascii():
        return data.decode("ascii")
    name = (label or "").strip().strip('"').lower()
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
    return guess(data, tld)


def guess(data: bytes, tld: str | None = None) -> str:
    """Text of 8-bit data with no usable label: UTF-8 if it is, else what chardetng says,
    else windows-1252, else Latin-1 (which fits any bytes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    hint = tld.encode("ascii", "ignore").lower() if tld else None
    try:
        found = codec(detect(data, allow_utf8=False, tld=hint or None))
    except (ValueError, TypeError):  # a tld chardetng refuses: ask without one
        found = codec(detect(data, allow_utf8=False))
    for name in (found, "cp1252"):
        if name:
            try:
                return data.decode(name)
            except UnicodeDecodeError:
                continue
    return data.decode("latin-1")
