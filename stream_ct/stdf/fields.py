"""Read the fields of one STDF record body in order, the slow and general way.

STDF lets a writer omit trailing fields; a field that is entirely missing reads as None. A
field that starts inside the record but runs past its end is corrupt (``BadRecord``, naming
the field); the length byte of a Cn or Bn and the bit count of a Dn belong to their field.

>>> c = Cursor(b"\\x05\\x00\\x03abc", "<")
>>> c.u2(), c.cn(), c.u1()
(5, 'abc', None)
>>> c = Cursor(b"\\x05\\x00\\x03", "<", ("NUM", "NAME"))
>>> c.u2(), c.cn()
Traceback (most recent call last):
...
stream_ct.stdf.fields.BadRecord: NAME runs past the end of the record (4 bytes at +2, REC_LEN 3)
"""

from __future__ import annotations

import struct
from typing import Callable


_STRUCTS = {e: {code: struct.Struct(e + code) for code in "BbHhIif"} for e in "<>"}


class BadRecord(Exception):
    """A record whose fields do not fit it (the reader turns this into a ``StdfError``)."""


def cut_field(field: str, size: int, start: int, rec_len: int) -> BadRecord:
    """The error for a field of ``size`` bytes at ``start`` that a record of ``rec_len`` bytes cuts."""
    return BadRecord(f"{field} runs past the end of the record ({size} bytes at +{start}, REC_LEN {rec_len})")


def decode_text(raw: bytes) -> str:
    """STDF text: UTF-8 when it is valid, else Latin-1 (every byte maps to a character)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Cursor:
    """Sequential reader over ``body`` with byte order ``endian`` (``"<"`` or ``">"``).

    ``fields`` names the record's fields in order from byte ``pos`` on, for the error about a
    field the record cuts.
    """

    __slots__ = ("body", "pos", "fields", "field", "_e", "_s")

    def __init__(self, body: bytes, endian: str, fields: tuple[str, ...] = (), pos: int = 0):
        self.body, self.pos, self._e, self._s = body, pos, endian, _STRUCTS[endian]
        self.fields, self.field = fields, 0  # index of the next field

    def _take(self, size: int) -> int | None:
        """Step over the next field, ``size`` bytes: its start, or None when the record ended before it."""
        start = self.pos
        if start >= len(self.body):
            return None
        if start + size > len(self.body):
            name = self.fields[self.field] if self.field < len(self.fields) else f"field {self.field + 1}"
            raise cut_field(name, size, start, len(self.body))
        self.pos, self.field = start + size, self.field + 1
        return start

    def _num(self, code: str):
        st = self._s[code]
        start = self._take(st.size)
        return None if start is None else st.unpack_from(self.body, start)[0]

    def u1(self):
        return self._num("B")

    def i1(self):
        return self._num("b")

    def u2(self):
        return self._num("H")

    def i2(self):
        return self._num("h")

    def u4(self):
        return self._num("I")

    def r4(self):
        return self._num("f")

    def raw(self, n: int) -> bytes | None:
        """The next ``n`` bytes (None when the record ended before them)."""
        start = self._take(n)
        return None if start is None else self.body[start:start + n]

    def _prefixed(self, code: str, data_size: Callable[[int], int]) -> bytes | None:
        """A field whose ``code`` prefix gives ``data_size(prefix)`` bytes of data: the data."""
        prefix = self._s[code]
        size = prefix.size
        if self.pos + size <= len(self.body):  # else omitted, or cut inside the prefix
            size += data_size(prefix.unpack_from(self.body, self.pos)[0])
        start = self._take(size)
        return None if start is None else self.body[start + prefix.size:start + size]

    def cn(self) -> str | None:
        """A length-prefixed string (Cn)."""
        data = self.bn()
        return None if data is None else decode_text(data)

    def bn(self) -> bytes | None:
        """A length-prefixed byte field (Bn)."""
        return self._prefixed("B", lambda length: length)

    def dn(self) -> bytes | None:
        """A bit field with a 16-bit bit count (Dn)."""
        return self._prefixed("H", lambda bits: (bits + 7) // 8)

    def array(self, code: str, count: int) -> tuple | None:
        """``count`` values of one numeric type, e.g. ``array("f", k)`` for kxR4."""
        st = struct.Struct(f"{self._e}{count}{code}")
        start = self._take(st.size)
        if start is None:
            return () if count == 0 else None
        return st.unpack_from(self.body, start)

    def nibbles(self, count: int) -> bytes | None:
        """``count`` 4-bit values (jxN1), returned packed as read."""
        data = self.raw((count + 1) // 2)
        return b"" if count == 0 else data
