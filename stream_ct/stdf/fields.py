"""Read the fields of one STDF record body in order, the slow and general way.

STDF lets a writer omit trailing fields; a field that is entirely missing reads as None. A
field that starts inside the record but runs past its end is corrupt (``BadRecord``).

>>> c = Cursor(b"\\x05\\x00\\x03abc", "<")
>>> c.u2(), c.cn(), c.u1()
(5, 'abc', None)
"""

from __future__ import annotations

import struct


_STRUCTS = {e: {code: struct.Struct(e + code) for code in "BbHhIif"} for e in "<>"}


class BadRecord(Exception):
    """A record whose fields do not fit it (the reader turns this into a ``StdfError``)."""


def decode_text(raw: bytes) -> str:
    """STDF text: UTF-8 when it is valid, else Latin-1 (every byte maps to a character)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Cursor:
    """Sequential reader over ``body`` with byte order ``endian`` (``"<"`` or ``">"``)."""

    __slots__ = ("body", "pos", "_e", "_s")

    def __init__(self, body: bytes, endian: str):
        self.body, self.pos, self._e, self._s = body, 0, endian, _STRUCTS[endian]

    def _num(self, code: str):
        st = self._s[code]
        if self.pos >= len(self.body):
            return None
        if self.pos + st.size > len(self.body):
            raise BadRecord(f"field runs past the end of the record at +{self.pos}")
        (value,) = st.unpack_from(self.body, self.pos)
        self.pos += st.size
        return value

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
        if self.pos >= len(self.body) or n == 0:
            return None if self.pos >= len(self.body) else b""
        if self.pos + n > len(self.body):
            raise BadRecord(f"field runs past the end of the record at +{self.pos}")
        self.pos += n
        return self.body[self.pos - n:self.pos]

    def cn(self) -> str | None:
        """A length-prefixed string (Cn)."""
        n = self.u1()
        return None if n is None else decode_text(self.raw(n) or b"")

    def bn(self) -> bytes | None:
        """A length-prefixed byte field (Bn)."""
        n = self.u1()
        return None if n is None else self.raw(n) or b""

    def dn(self) -> bytes | None:
        """A bit field with a 16-bit bit count (Dn)."""
        n = self.u2()
        return None if n is None else self.raw((n + 7) // 8) or b""

    def array(self, code: str, count: int) -> tuple | None:
        """``count`` values of one numeric type, e.g. ``array("f", k)`` for kxR4."""
        if count == 0 or self.pos >= len(self.body):
            return () if count == 0 else None
        st = struct.Struct(f"{self._e}{count}{code}")
        if self.pos + st.size > len(self.body):
            raise BadRecord(f"array runs past the end of the record at +{self.pos}")
        values = st.unpack_from(self.body, self.pos)
        self.pos += st.size
        return values

    def nibbles(self, count: int) -> bytes | None:
        """``count`` 4-bit values (jxN1), returned packed as read."""
        return self.raw((count + 1) // 2) if count else b""
