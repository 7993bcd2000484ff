"""Read an STDF V4 file into part records (the format of ``stream_ct.record``).

One record per PRR that closes a part with at least one test result. PTR, MPR and FTR
results belong to the open PIR of the same head and site, so interleaved sites pair up.

>>> from stream_ct.stdf.writer import example_file
>>> reader = StdfReader(example_file(), name="example.stdf")
>>> [(r["part_id"], r["site"], r["tests"]) for r in reader]
[('2', 2, {'100:vdd': None}), ('1', 1, {'100:vdd': 1.5})]
>>> reader.stats.ptr, reader.stats.parts
(2, 2)

Decisions (docs/stdf.md has the full table): a result is None when TEST_FLG bits 0-5 or
PARM_FLG bits 0-2 are set; FTR pass/fail is 1.0/0.0; MPR results are keyed
``"<TEST_NUM>:<TEST_TXT>[<pin>]"``, pin the PMR's logical (else physical) name of RTN_INDX, the
same on every site (else the index); limits come from the first PTR/MPR of a test that
gives a limit, or an OPT_FLAG saying it has none, and ride, once, on the next part a PRR
closes that has the test (whether or not a PRR closed the part that carried them); ``ts`` is
the START_T of the head's latest WIR (else MIR START_T) plus the cumulative TEST_T of the
part's head and site; the parts of a WIR without WAFER_ID wait for its WRR and take the WRR's
WAFER_ID (else the WIR's ordinal).
A record may end between fields (trailing fields omitted); a field it cuts is corrupt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from stream_ct.stdf.errors import StdfError
from stream_ct.stdf.fields import BadRecord, Cursor, cut_field, decode_text
from stream_ct.stdf.source import DECOMPRESS_ERRORS, open_source, source_name
from stream_ct.stdf.writer import RECORDS

#: REC_TYP values of STDF V4 (180 and 181 are reserved for custom records). Anything else
#: means the file is corrupt or the reader lost record alignment.
REC_TYPES = frozenset({0, 1, 2, 5, 10, 15, 20, 50, 180, 181})
CHUNK_SIZE = 1 << 20
#: TEST_FLG bits 0-5 and PARM_FLG bits 0-2: any set makes RESULT unusable (STDF V4, PTR).
TEST_FLG_INVALID, PARM_FLG_INVALID = 0x3F, 0x07
#: OPT_FLAG: bit 4/5 "LO/HI_LIMIT invalid, use the first PTR's", bit 6/7 "no LO/HI limit".
NO_LO_LIMIT, NO_HI_LIMIT = 0x50, 0xA0
#: OPT_FLAG bits 6 and 7: the test has no low and no high limit.
NO_LIMITS = 0xC0
MISSING_COORD, MISSING_BIN = -32768, 65535

PTR, MPR, FTR = (15 << 8) | 10, (15 << 8) | 15, (15 << 8) | 20
MIR, MRR, PMR = (1 << 8) | 10, (1 << 8) | 20, (1 << 8) | 60
WIR, WRR = (2 << 8) | 10, (2 << 8) | 20
PIR, PRR = (5 << 8) | 10, (5 << 8) | 20
#: Field names of each record in STDF V4 order, for the error about a field a record cuts.
FIELDS = {name: tuple(field for field, _, _ in spec) for name, (_, _, spec) in RECORDS.items()}
#: The PTR fields that hold its limits, from ALARM_ID (the first after TEST_TXT) on.
PTR_LIMIT_FIELDS = FIELDS["PTR"][FIELDS["PTR"].index("ALARM_ID"):]


@dataclass
class ReadStats:
    """What one file held: record counts, parts yielded, and parts that were not."""

    bytes: int = 0  # of uncompressed STDF data read
    #: 0: the file has no MRR, so it may be incomplete (a partial copy, or still being written).
    mrr: int = 0
    prr: int = 0
    ptr: int = 0
    mpr: int = 0
    ftr: int = 0
    parts: int = 0
    #: PRRs whose part had no PTR/MPR/FTR (a record needs at least one test; counted, skipped).
    parts_without_tests: int = 0
    #: Parts with results that no PRR closed (a PIR followed by another PIR, or end of file).
    unclosed_parts: int = 0
    #: Parts open when the file ended (a PIR, or results, without a PRR), with results or not.
    left_open: int = 0
    #: Parts that supersede an earlier one (PRR ``PART_FLG`` bit 0 or 1; ``stream_ct.retests``).
    retests: int = 0


class _Part:
    __slots__ = ("tests", "explicit")

    def __init__(self, explicit: bool):
        self.tests: dict[str, float | None] = {}
        self.explicit = explicit  # opened by a PIR, not by a result that came before it


def _limits(opt: int, lo, hi, units) -> dict | None:
    """The limits a PTR or MPR gives; None when it gives neither limit (its record ends at
    OPT_FLAG, or OPT_FLAG calls them invalid) nor says the test has none: a later record's count."""
    limits = {"lo": None if opt & NO_LO_LIMIT else lo,
              "hi": None if opt & NO_HI_LIMIT else hi,
              "units": units or ""}
    if limits["lo"] is None and limits["hi"] is None and opt & NO_LIMITS != NO_LIMITS:
        return None
    return limits


class StdfReader:
    """Iterate the part records of one STDF V4 file (path, bytes or binary file object).

    Plain, gzip, bzip2 and single-file zip input are recognised by content. A truncated or
    corrupt file raises ``StdfError`` naming the file and the byte offset (in the
    uncompressed data) of the bad record. ``progress(bytes_read, file_size, parts)`` is
    called after each chunk; ``stats`` counts what was read.
    """

    def __init__(self, source, name: str | None = None,
                 progress: Callable[[int, int, int], None] | None = None,
                 chunk_size: int = CHUNK_SIZE):
        self.source, self.name = source, name or source_name(source)
        self.progress, self.chunk_size = progress, chunk_size
        self.stats = ReadStats()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        src = open_source(self.source, self.name)
        self._held: dict[int, list[dict[str, Any]]] = {}  # head -> parts waiting for the WRR's WAFER_ID
        self._ready: list[dict[str, Any]] = []  # held parts released, to be yielded
        try:
            yield from self._scan(src)
        except StdfError:
            yield from self._release_held()  # the parts before the bad byte are good
            raise
        finally:
            src.close()
        yield from self._release_held()  # wafers whose WRR never came keep their WIR ordinal

    # -- the record loop -------------------------------------------------------------

    def _start(self, buf: bytes) -> None:
        if buf[2:4] != b"\x00\x0a":
            raise StdfError(self.name, "not an STDF file: it does not start with a FAR record", offset=0)
        cpu, version = buf[4], buf[5]
        e = {1: ">", 2: "<"}.get(cpu)
        if e is None:
            problem = f"FAR CPU_TYPE {cpu} is not supported (1 = big-endian, 2 = little-endian)"
        elif struct.unpack_from(e + "H", buf)[0] != 2:
            problem = f"FAR record length does not match CPU_TYPE {cpu}"
        elif version != 4:
            problem = f"STDF version {version} is not supported (only V4)"
        else:
            problem = None
        if problem:
            raise StdfError(self.name, problem, offset=0, rec_typ=0, rec_sub=10)
        self.e = e
        self._mir: dict[str, Any] | None = None
        self._t0 = 0.0
        self._head_t0: dict[int, float] = {}
        self._elapsed_ms: dict[int, int] = {}
        self._wafers: dict[int, str] = {}
        self._wafer_latest, self._wir_count = "", 0
        self._latest_head: int | None = None  # the head of the latest WIR
        self._open: dict[int, _Part] = {}
        self._keys: dict[tuple[int, bytes], str] = {}
        self._names: dict[int, str] = {}
        self._limits: dict[str, dict] = {}
        self._unsent_limits: dict[str, dict] = {}  # learned, not yet on a closed part
        self._mpr_index: dict[int, tuple] = {}
        self._pins: dict[int, str] = {}  # PMR_INDX -> pin name
        self._handlers = {MIR: self._on_mir, MRR: self._on_mrr, PMR: self._on_pmr, WIR: self._on_wir,
                          WRR: self._on_wrr, PIR: self._on_pir, PRR: self._on_prr, PTR: self._on_short_ptr,
                          MPR: self._on_mpr, FTR: self._on_ftr}

    def _scan(self, src) -> Iterator[dict[str, Any]]:
        name, stats = self.name, self.stats
        buf, base, pos, n = b"", 0, 0, 0
        typ = sub = None
        started = False
        n_ptr = 0
        try:
            while True:
                try:
                    chunk = src.read(self.chunk_size)
                except DECOMPRESS_ERRORS as exc:
                    raise StdfError(name, f"corrupt or truncated compressed data ({exc})", offset=base + n) from exc
                if not chunk:
                    break
                buf = buf[pos:] + chunk
                base, pos, n = base + pos, 0, len(buf)
                if not started:
                    if n < 6:
                        continue
                    self._start(buf)
                    started = True
                    head_of = struct.Struct(self.e + "HBB").unpack_from
                    ptr_of = struct.Struct(self.e + "IBBBBf").unpack_from
                    keys, names_for, opened, limits = self._keys, self._test_key, self._open, self._limits
                    handlers, ready = self._handlers, self._ready
                while pos + 4 <= n:
                    rec_len, typ, sub = head_of(buf, pos)
                    end = pos + 4 + rec_len
                    if end > n:
                        break
                    if typ == 15 and sub == 10 and rec_len >= 12:
                        # PTR fast path: fixed fields, TEST_TXT, and limits only once per test.
                        test_num, head, site, tflg, pflg, result = ptr_of(buf, pos + 4)
                        p = pos + 16
                        if p < end:
                            q = p + 1 + buf[p]
                            if q > end:
                                raise cut_field("TEST_TXT", q - p, p - pos - 4, rec_len)
                            k = (test_num, buf[p + 1:q])
                        else:
                            q, k = end, (test_num, b"")
                        key = keys.get(k) or names_for(k)
                        part = opened.get((head << 8) | site) or self._orphan(head, site)
                        part.tests[key] = None if (tflg & TEST_FLG_INVALID or pflg & PARM_FLG_INVALID) else result
                        if key not in limits and q < end:
                            self._ptr_limits(key, buf[pos + 4:end], q - pos - 4)
                        n_ptr += 1
                    elif typ in REC_TYPES:
                        handler = handlers.get((typ << 8) | sub)
                        if handler is not None:
                            record = handler(buf[pos + 4:end])
                            if record is not None:
                                stats.parts += 1
                                yield record
                            if ready:
                                yield from self._yield_ready()
                    else:
                        raise BadRecord("unknown record type (corrupt file?)")
                    pos = end
                stats.ptr, stats.bytes, n_ptr = stats.ptr + n_ptr, base + pos, 0
                if self.progress is not None:
                    self.progress(src.position, src.size, stats.parts)
        except (BadRecord, struct.error, IndexError) as exc:
            raise StdfError(name, f"corrupt record: {exc}", offset=base + pos, rec_typ=typ, rec_sub=sub) from exc
        stats.ptr, stats.bytes = stats.ptr + n_ptr, base + pos
        if not started:
            raise StdfError(name, "empty file" if n == 0 else "not an STDF file: too short", offset=0)
        if pos < n:
            if n - pos < 4:
                raise StdfError(name, "truncated record header", offset=base + pos)
            rec_len, typ, sub = head_of(buf, pos)
            raise StdfError(name, "truncated record", offset=base + pos, rec_typ=typ, rec_sub=sub,
                            detail=f"REC_LEN {rec_len}, {n - pos - 4} bytes left")
        stats.unclosed_parts += sum(1 for part in self._open.values() if part.tests)
        stats.left_open = len(self._open)

    # -- test keys and limits --------------------------------------------------------

    def _test_key(self, k: tuple[int, bytes]) -> str:
        """``"<TEST_NUM>:<TEST_TXT>"`` (text stripped); an empty TEST_TXT takes the test's first name."""
        num, raw = k
        name = decode_text(raw).strip()
        if name:
            self._names.setdefault(num, name)
        else:
            name = self._names.get(num)
            if name is None:
                return f"{num}:"  # not cached: a later PTR may still name the test
        key = self._keys[k] = f"{num}:{name}"
        return key

    def _ptr_limits(self, key: str, body: bytes, alarm_id_at: int) -> None:
        """Learn the limits of a PTR whose OPT_FLAG is present (ALARM_ID starts at ``alarm_id_at``)."""
        opt_at = alarm_id_at + 1 + body[alarm_id_at]
        if opt_at + 1 == len(body) and body[opt_at] & NO_LIMITS != NO_LIMITS:
            return  # it ends at an OPT_FLAG that does not say the test has none: a later PTR's count
        c = Cursor(body, self.e, PTR_LIMIT_FIELDS, alarm_id_at)
        c.cn()
        opt = c.u1()
        if opt is None:
            return
        c.i1(), c.i1(), c.i1()
        lo, hi = c.r4(), c.r4()
        self._learn_limits(key, _limits(opt, lo, hi, c.cn()))

    def _learn_limits(self, key: str, limits: dict | None) -> None:
        """Cache a test's limits, if any; the next part closed with the test carries them."""
        if limits is not None:
            self._limits[key] = self._unsent_limits[key] = limits

    def _limits_for(self, tests: dict[str, float | None]) -> dict[str, dict]:
        """The limits not yet sent of the tests in ``tests``, now counted as sent."""
        due = [key for key in self._unsent_limits if key in tests]
        return {key: self._unsent_limits.pop(key) for key in due}

    def _orphan(self, head: int, site: int) -> _Part:
        """A part for results that came before their PIR; the PIR adopts it."""
        part = self._open[(head << 8) | site] = _Part(explicit=False)
        return part

    def _part_of(self, head: int, site: int) -> _Part:
        return self._open.get((head << 8) | site) or self._orphan(head, site)

    @staticmethod
    def _required(c: Cursor, count: int) -> list[int]:
        values = [c.u1() for _ in range(count)]
        if None in values:
            raise BadRecord("record too short for its required fields")
        return values

    # -- records other than the common PTR -------------------------------------------

    def _on_mir(self, body: bytes) -> None:
        c = Cursor(body, self.e, FIELDS["MIR"])
        setup_t, start_t = c.u4(), c.u4()
        c.u1(), c.raw(1), c.raw(1), c.raw(1), c.u2(), c.raw(1)
        (lot, _part_typ, node, tstr, job, job_rev, *_rest, facil, floor) = [
            (c.cn() or "").strip() for _ in range(19)]
        self._mir = {"lot_id": lot, "tester": node or tstr, "fab": facil or floor,
                     "test_program": job, "test_program_rev": job_rev}
        self._t0 = float(start_t or setup_t or 0)

    def _on_mrr(self, _body: bytes) -> None:
        self.stats.mrr += 1

    def _on_pmr(self, body: bytes) -> None:
        """Name a pin: its logical name, else its physical one (a channel name differs per site)."""
        c = Cursor(body, self.e, FIELDS["PMR"])
        index = c.u2()
        c.u2(), c.cn()  # CHAN_TYP, CHAN_NAM
        phy, log = (c.cn() or "").strip(), (c.cn() or "").strip()
        if index is not None and (log or phy):
            self._pins[index] = log or phy

    def _pin_labels(self, index) -> list:
        """The PMR names of the pins ``index``, where every one is named and no two alike, else the indexes."""
        names = [self._pins.get(i) for i in index]
        return names if None not in names and len(set(names)) == len(names) else list(index)

    def _on_wir(self, body: bytes) -> None:
        c = Cursor(body, self.e, FIELDS["WIR"])
        head, _site_grp = self._required(c, 2)
        start_t, wafer = c.u4(), (c.cn() or "").strip()
        self._wir_count += 1
        if head in self._held:  # the last wafer's WRR never came
            self._ready += self._held.pop(head)
        if not wafer:  # its parts wait for the WRR, which may name the wafer
            self._held[head] = []
        wafer = wafer or str(self._wir_count)
        self._wafers[head] = self._wafer_latest = wafer
        self._latest_head = head
        if start_t:
            # Heads test their own wafers: a WIR restarts the clock of its head only.
            self._head_t0[head] = float(start_t)
            for hs in [hs for hs in self._elapsed_ms if hs >> 8 == head]:
                del self._elapsed_ms[hs]

    def _on_wrr(self, body: bytes) -> None:
        """Release the parts of a wafer whose WIR had no WAFER_ID, named by the WRR's if it has one."""
        c = Cursor(body, self.e, FIELDS["WRR"])
        head, _site_grp = self._required(c, 2)
        held = self._held.pop(head, None)
        if held is None:
            return
        c.u4(), c.u4(), c.u4(), c.u4(), c.u4(), c.u4()  # FINISH_T and the part counts
        wafer = (c.cn() or "").strip()
        if wafer:
            if self._wafer_latest == self._wafers[head]:
                self._wafer_latest = wafer
            self._wafers[head] = wafer
            for record in held:
                record["wafer_id"] = wafer
        self._ready += held

    def _yield_ready(self) -> Iterator[dict[str, Any]]:
        """The released parts, in the order their PRRs came."""
        self.stats.parts += len(self._ready)
        yield from self._ready
        self._ready.clear()

    def _release_held(self) -> Iterator[dict[str, Any]]:
        """Every part still waiting for a WRR, as it is."""
        for head in list(self._held):
            self._ready += self._held.pop(head)
        return self._yield_ready()

    def _on_pir(self, body: bytes) -> None:
        head, site = self._required(Cursor(body, self.e, FIELDS["PIR"]), 2)
        part = self._open.get((head << 8) | site)
        if part is not None and not part.explicit:
            part.explicit = True
            return
        if part is not None and part.tests:
            self.stats.unclosed_parts += 1
        self._open[(head << 8) | site] = _Part(explicit=True)

    def _on_short_ptr(self, body: bytes) -> None:
        """A PTR that ends before RESULT (a writer may omit trailing fields): no result."""
        c = Cursor(body, self.e, FIELDS["PTR"])
        num = c.u4()
        head, site, _tflg = self._required(c, 3)
        c.u1(), c.r4()  # PARM_FLG; RESULT is absent here unless the record cuts it (corrupt)
        key = self._keys.get((num, b"")) or self._test_key((num, b""))
        self._part_of(head, site).tests[key] = None
        self.stats.ptr += 1

    def _on_mpr(self, body: bytes) -> None:
        c = Cursor(body, self.e, FIELDS["MPR"])
        num = c.u4()
        head, site, tflg = self._required(c, 3)
        pflg = c.u1() or 0
        j, k = c.u2() or 0, c.u2() or 0
        c.nibbles(j)
        results = c.array("f", k) or ()
        raw_txt = c.bn() or b""
        c.cn()
        opt = c.u1()
        c.i1(), c.i1(), c.i1()
        lo, hi = c.r4(), c.r4()
        c.r4(), c.r4()
        index = c.array("H", j)
        units = c.cn()
        if index and len(index) == len(results):
            self._mpr_index.setdefault(num, index)
        else:
            index = self._mpr_index.get(num)
        pins = self._pin_labels(index) if index and len(index) == len(results) else range(len(results))
        base = self._keys.get((num, raw_txt)) or self._test_key((num, raw_txt))
        part = self._part_of(head, site)
        invalid = tflg & TEST_FLG_INVALID or pflg & PARM_FLG_INVALID
        for pin, value in zip(pins, results):
            key = f"{base}[{pin}]"
            part.tests[key] = None if invalid else value
            if opt is not None and key not in self._limits:
                self._learn_limits(key, _limits(opt, lo, hi, units))
        self.stats.mpr += 1

    def _on_ftr(self, body: bytes) -> None:
        c = Cursor(body, self.e, FIELDS["FTR"])
        num = c.u4()
        head, site, tflg = self._required(c, 3)
        c.u1()  # OPT_FLAG
        for _ in range(6):  # CYCL_CNT REL_VADR REPT_CNT NUM_FAIL XFAIL_AD YFAIL_AD
            c.u4()
        c.i2()
        j, k = c.u2() or 0, c.u2() or 0
        c.array("H", j), c.nibbles(j), c.array("H", k), c.nibbles(k)
        c.dn(), c.cn(), c.cn(), c.cn()
        raw_txt = c.bn() or b""
        key = self._keys.get((num, raw_txt)) or self._test_key((num, raw_txt))
        # bits 0-5 as for a PTR, bit 6 "no pass/fail indication", bit 7 "failed".
        value = None if tflg & 0x7F else (0.0 if tflg & 0x80 else 1.0)
        self._part_of(head, site).tests[key] = value
        self.stats.ftr += 1

    def _on_prr(self, body: bytes) -> dict[str, Any] | None:
        c = Cursor(body, self.e, FIELDS["PRR"])
        head, site = self._required(c, 2)
        flags = c.u1()
        c.u2()  # NUM_TEST, not used: the record holds the results that arrived
        hard, soft, x, y = c.u2(), c.u2(), c.i2(), c.i2()
        test_t, part_id = c.u4() or 0, (c.cn() or "").strip()
        if self._mir is None:
            raise BadRecord("part result (PRR) before the MIR record")
        stats = self.stats
        stats.prr += 1
        hs = (head << 8) | site
        elapsed = self._elapsed_ms[hs] = self._elapsed_ms.get(hs, 0) + test_t
        part = self._open.pop(hs, None)
        if part is None or not part.tests:
            stats.parts_without_tests += 1
            return None
        mir = self._mir
        record = {
            "lot_id": mir["lot_id"],
            "wafer_id": self._wafers.get(head, self._wafer_latest),
            "part_id": part_id or str(stats.prr),
            "x": None if x in (None, MISSING_COORD) else x,
            "y": None if y in (None, MISSING_COORD) else y,
            "head": head,
            "site": site,
            "tester": mir["tester"],
            "fab": mir["fab"],
            "test_program": mir["test_program"],
            "test_program_rev": mir["test_program_rev"],
            "ts": round(self._head_t0.get(head, self._t0) + elapsed / 1000.0, 3),
            "hard_bin": None if hard in (None, MISSING_BIN) else hard,
            "soft_bin": None if soft in (None, MISSING_BIN) else soft,
            "passed": None if flags is None or flags & 0x10 else not flags & 0x08,
        }
        if test_t:
            record["test_time_ms"] = test_t
        if flags and flags & 0x03:  # bit 0: replaces the part with this PART_ID, bit 1: at this X, Y
            record["supersedes"] = "part" if flags & 0x01 else "die"
            stats.retests += 1
        record["tests"] = part.tests
        limits = self._limits_for(part.tests)
        if limits:
            record["limits"] = limits
        held = self._held.get(head if head in self._wafers else self._latest_head)  # its wafer's WIR head
        if held is not None:
            held.append(record)
            return None
        return record


def read_parts(source, name: str | None = None) -> Iterator[dict[str, Any]]:
    """The part records of one STDF file; see ``StdfReader`` for counts and progress."""
    return iter(StdfReader(source, name))
