"""The one error type of the STDF package: a bad input file, named with the byte offset.

>>> str(StdfError("lot2.stdf", "truncated record", offset=123, rec_typ=15, rec_sub=10))
'lot2.stdf: truncated record at byte 123 (REC_TYP 15 REC_SUB 10)'
"""

from __future__ import annotations


class StdfError(ValueError):
    """A truncated, corrupt or unsupported STDF file.

    ``offset`` is the byte offset of the bad record in the uncompressed STDF data;
    ``note`` says what happened to the output (``"812 parts were published before the
    error"``) and ``result`` carries the partial result of ``convert``/``publish``.
    """

    def __init__(self, file: str, reason: str, *, offset: int | None = None,
                 rec_typ: int | None = None, rec_sub: int | None = None, detail: str | None = None,
                 note: str | None = None, result=None):
        self.file, self.reason, self.offset, self.detail = file, reason, offset, detail
        self.rec_typ, self.rec_sub, self.note, self.result = rec_typ, rec_sub, note, result
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.file}: {self.reason}"
        if self.offset is not None:
            text += f" at byte {self.offset}"
        inside = [f"REC_TYP {self.rec_typ} REC_SUB {self.rec_sub}"] if self.rec_typ is not None else []
        if self.detail:
            inside.append(self.detail)
        if inside:
            text += f" ({', '.join(inside)})"
        if self.note:
            text += f": {self.note}"
        return text

    def with_note(self, note: str, result) -> "StdfError":
        """A copy of this error that also says (and carries) what was output before it."""
        return StdfError(self.file, self.reason, offset=self.offset, rec_typ=self.rec_typ,
                         rec_sub=self.rec_sub, detail=self.detail, note=note, result=result)
