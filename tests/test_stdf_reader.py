"""The STDF V4 reader: exact counts on real files, multi-site pairing, flags, limits, bad input.

The expected counts are hard-coded. They were cross-checked with pystdf 1.4 (run outside the
project) and are re-derived on every run by ``walk``, a record-header walker in this file
that shares no code with the reader under test.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import os
import signal
import struct
import threading
import zipfile
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stdf_support import STDF_DIR, main, needs_data
from stream_ct.record import part_key, validate_record
from stream_ct.recording import read_recording
from stream_ct.stdf import StdfError, StdfReader
from stream_ct.stdf.convert import convert
from stream_ct.stdf.writer import RECORDS, record



# -- an independent walker: record headers, PIR/PRR pairing, PTR flags ------------------


def walk(data: bytes) -> dict:
    """Count records, and per PRR: (tests since its PIR, HARD_BIN, passed)."""
    e = ">" if data[4] == 1 else "<"
    pos, counts, open_, parts, invalid = 0, collections.Counter(), {}, [], 0
    while pos < len(data):
        length, typ, sub = struct.unpack_from(e + "HBB", data, pos)
        body = data[pos + 4:pos + 4 + length]
        counts[(typ, sub)] += 1
        if (typ, sub) == (5, 10):
            open_[body[:2]] = 0
        elif (typ, sub) in ((15, 10), (15, 15), (15, 20)):
            if body[4:6] in open_:
                open_[body[4:6]] += 1
            if (typ, sub) == (15, 10) and (body[6] & 0x3F or body[7] & 0x07):
                invalid += 1
        elif (typ, sub) == (5, 20):
            hard_bin = struct.unpack_from(e + "H", body, 5)[0]
            parts.append((open_.pop(body[:2], 0), hard_bin, not body[2] & 0x08))
        pos += 4 + length
    return {"counts": counts, "parts": parts, "invalid_ptr": invalid}


def load(name: str) -> bytes:
    data = (STDF_DIR / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


# Verified with the walker above and with pystdf 1.4.
LOT2_PRR, LOT2_PTR, LOT2_TESTS, LOT2_INVALID_PTR = 1569, 52403, 74, 15
LOT2_PARTS_WITH_TESTS = 784  # every other PIR/PRR pair carries no PTR at all
LOT2_TESTS_PER_PART = {
    1: 8, 8: 1, 12: 1, 13: 1, 17: 1, 18: 1, 19: 1, 23: 1, 29: 8, 32: 21, 33: 3, 35: 4, 36: 2,
    37: 1, 39: 3, 40: 1, 43: 1, 44: 1, 46: 1, 51: 4, 53: 3, 54: 60, 55: 4, 56: 11, 57: 1,
    62: 3, 63: 1, 64: 4, 72: 513, 74: 119}
LOT2_BINS_ALL_PRR = {(1, True): 1389, (2, False): 41, (4, False): 6, (5, False): 20, (7, False): 6,
                     (8, False): 79, (10, False): 10, (15, False): 1, (17, False): 1, (20, False): 16}
LOT2_BINS_WITH_TESTS = {(1, True): 703, (2, False): 21, (4, False): 4, (5, False): 9, (7, False): 2,
                        (8, False): 33, (10, False): 1, (15, False): 1, (17, False): 1, (20, False): 9}


@needs_data
def test_walker_agrees_with_the_verified_lot2_counts():
    w = walk(load("lot2.stdf.gz"))
    assert w["counts"][(5, 10)] == w["counts"][(5, 20)] == LOT2_PRR
    assert w["counts"][(15, 10)] == LOT2_PTR and w["invalid_ptr"] == LOT2_INVALID_PTR
    with_tests = [p for p in w["parts"] if p[0]]
    assert len(with_tests) == LOT2_PARTS_WITH_TESTS
    assert dict(collections.Counter(p[0] for p in with_tests)) == LOT2_TESTS_PER_PART
    assert dict(collections.Counter(p[1:] for p in w["parts"])) == LOT2_BINS_ALL_PRR
    assert dict(collections.Counter(p[1:] for p in with_tests)) == LOT2_BINS_WITH_TESTS


@needs_data
def test_lot2_parts_tests_and_bins():
    reader = StdfReader(STDF_DIR / "lot2.stdf.gz")
    records = list(reader)
    s = reader.stats
    assert (s.prr, s.ptr, s.mpr, s.ftr) == (LOT2_PRR, LOT2_PTR, 0, 0)
    assert len(records) == s.parts == LOT2_PARTS_WITH_TESTS
    assert s.parts_without_tests == LOT2_PRR - LOT2_PARTS_WITH_TESTS and s.unclosed_parts == 0
    assert sum(len(r["tests"]) for r in records) == LOT2_PTR
    assert dict(collections.Counter(len(r["tests"]) for r in records)) == LOT2_TESTS_PER_PART
    assert dict(collections.Counter((r["hard_bin"], r["passed"]) for r in records)) == LOT2_BINS_WITH_TESTS
    assert sum(v is None for r in records for v in r["tests"].values()) == LOT2_INVALID_PTR
    assert len({k for r in records for k in r["tests"]}) == LOT2_TESTS
    # limits: every test once, on the first part that carries it; 'no low limit' is None
    limits = [(k, v) for r in records for k, v in r.get("limits", {}).items()]
    assert len(limits) == len(dict(limits)) == LOT2_TESTS
    assert dict(limits)["1000:glxy_SS_IH     <> glxy_pin2"] == {
        "lo": pytest.approx(-0.9), "hi": pytest.approx(-0.4), "units": "v"}
    assert dict(limits)["1300:Uvlo hysteresis  <> UVLO_HYS"]["lo"] is None
    first = records[0]
    assert {k: first[k] for k in ("lot_id", "wafer_id", "part_id", "x", "y", "head", "site", "tester",
                                  "fab", "test_program", "test_program_rev", "ts")} == {
        "lot_id": "GAL-LOT", "wafer_id": "GAL-LOT-02", "part_id": "2", "x": 20, "y": -3, "head": 1,
        "site": 0, "tester": "galaxy-t", "fab": "", "test_program": "mobile-05", "test_program_rev": "16",
        "ts": 991774222.0}
    assert "test_time_ms" not in first  # TEST_T is 0 in this file
    assert len({part_key(r) for r in records}) == len(records)
    assert all(validate_record(r) is None for r in records)


@needs_data
def test_makechip_final_test_with_ftrs_and_test_time():
    w = walk(load("makechip_d10_1.std"))
    assert (w["counts"][(15, 10)], w["counts"][(15, 20)], w["parts"]) == (133, 94, [(227, 1, True)])
    reader = StdfReader(STDF_DIR / "makechip_d10_1.std")
    (part,) = list(reader)
    assert (reader.stats.ptr, reader.stats.ftr) == (133, 94)
    assert len(part["tests"]) == 227 and len(part["limits"]) == 133
    assert part["tests"]["100000:Continuity"] == 1.0  # FTR passed
    assert sorted(v for k, v in part["tests"].items() if k not in part["limits"]) == [1.0] * 94
    assert {k: part[k] for k in ("lot_id", "wafer_id", "part_id", "x", "y", "head", "site", "tester",
                                 "test_program", "hard_bin", "soft_bin", "passed", "test_time_ms")} == {
        "lot_id": "LOT_NUMBER_IS_XXXX", "wafer_id": "", "part_id": "6", "x": None, "y": None, "head": 0,
        "site": 0, "tester": "d10-1", "test_program": "AD7226", "hard_bin": 1, "soft_bin": 1,
        "passed": True, "test_time_ms": 5382}
    assert part["ts"] == 1333071710 + 5.382  # MIR START_T + TEST_T
    assert validate_record(part) is None


@needs_data
def test_makechip_x_mpr_keys_and_results_outside_any_pir():
    reader = StdfReader(STDF_DIR / "makechip_x.stdf")
    (part,) = list(reader)
    # MPR 22 has 4 results but 2 RTN_INDX entries: keyed by position; the PTR and MPR come
    # before the PIR of their site, which adopts them; the FTRs on head 2 site 1 never get a PRR.
    assert part["tests"] == {"22:text[0]": 1.0, "22:text[1]": 2.0, "22:text[2]": 3.0, "22:text[3]": 4.0,
                             "44:text": 5.5}
    assert part["limits"]["22:text[2]"] == {"lo": 1.0, "hi": 3.0, "units": "units"}
    assert (part["lot_id"], part["fab"], part["part_id"], part["passed"]) == ("lotID", "facilityID", "partID", True)
    assert (reader.stats.mpr, reader.stats.ftr, reader.stats.unclosed_parts) == (1, 2, 1)


# -- synthetic multi-site files ----------------------------------------------------------


def test_mpr_pins_are_keyed_by_their_pmr_pin_name_on_every_site():
    """Each site's channels have PMR indexes of their own: keyed by index, one pin was one feature
    per site. The PMR's logical pin name (else its physical one) is the same on every site."""
    pmr = lambda index, site, log, phy="": record("PMR", PMR_INDX=index, SITE_NUM=site, CHAN_NAM=f"ch{index}",  # noqa: E731
                                                  PHY_NAM=phy, LOG_NAM=log)
    mpr = lambda site, pins, **kw: record("MPR", TEST_NUM=30, SITE_NUM=site, RTN_ICNT=len(pins),  # noqa: E731
                                          RSLT_CNT=2, RTN_STAT=[0] * len(pins), RTN_RSLT=[0.5, 0.25],
                                          TEST_TXT="leak", RTN_INDX=pins, UNITS="uA", **kw)
    data = b"".join([
        record("FAR"), record("MIR", LOT_ID="L"),
        pmr(1, 1, "VDD"), pmr(2, 1, "", phy="P2"), pmr(3, 2, "VDD"), pmr(4, 2, "", phy="P2"),
        pmr(5, 1, "X"), pmr(6, 1, "X"),  # names that do not tell two pins apart
        record("PIR", SITE_NUM=1), record("PIR", SITE_NUM=2),
        mpr(1, [1, 2], LO_LIMIT=0.0, HI_LIMIT=1.0), mpr(2, [3, 4]),
        record("MPR", TEST_NUM=31, SITE_NUM=1, RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[0, 0], RTN_RSLT=[1.0, 2.0],
               TEST_TXT="x", RTN_INDX=[5, 6]),
        record("MPR", TEST_NUM=32, SITE_NUM=2, RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[0, 0], RTN_RSLT=[3.0, 4.0],
               TEST_TXT="nopmr", RTN_INDX=[8, 9]),
        record("PRR", SITE_NUM=1, PART_ID="a"), record("PRR", SITE_NUM=2, PART_ID="b")])
    a, b = StdfReader(data, name="pins.stdf")
    assert a["tests"] == {"30:leak[VDD]": 0.5, "30:leak[P2]": 0.25, "31:x[5]": 1.0, "31:x[6]": 2.0}
    assert b["tests"] == {"30:leak[VDD]": 0.5, "30:leak[P2]": 0.25, "32:nopmr[8]": 3.0, "32:nopmr[9]": 4.0}
    assert a["limits"]["30:leak[VDD]"] == {"lo": 0.0, "hi": 1.0, "units": "uA"}
    assert not any(k.startswith("30:") for k in b.get("limits", {}))  # one test, one key: sent once



def multisite(e: str) -> bytes:
    """Four sites, interleaved; limits on the first PTR of each test only."""
    r = lambda name, **kw: record(name, e, **kw)  # noqa: E731
    return b"".join([
        r("FAR"),
        r("MIR", START_T=1_700_000_000, LOT_ID=" L1 ", TSTR_TYP="T9", JOB_NAM="p", JOB_REV="3", FLOOR_ID="F2"),
        r("WIR", START_T=1_700_000_100, WAFER_ID="W7"),
        r("PIR", SITE_NUM=1), r("PIR", SITE_NUM=2), r("PIR", SITE_NUM=3),
        r("PTR", TEST_NUM=10, SITE_NUM=1, RESULT=1.0, TEST_TXT="idd", LO_LIMIT=0.0, HI_LIMIT=5.0, UNITS="mA"),
        r("PTR", TEST_NUM=10, SITE_NUM=2, RESULT=2.0, TEST_TXT="idd", upto="TEST_TXT"),
        r("PTR", TEST_NUM=10, SITE_NUM=3, RESULT=3.0, TEST_FLG=0x10, upto="RESULT"),  # not executed
        r("PTR", TEST_NUM=20, SITE_NUM=2, RESULT=-1.0, TEST_TXT="vt", OPT_FLAG=0x4E, HI_LIMIT=9.0),
        r("PTR", TEST_NUM=20, SITE_NUM=1, RESULT=7.0, PARM_FLG=0x04, TEST_TXT="vt", upto="ALARM_ID"),
        r("PTR", TEST_NUM=20, SITE_NUM=3, RESULT=9.9e37, TEST_FLG=0xC0, TEST_TXT="vt", upto="ALARM_ID"),
        r("PRR", SITE_NUM=2, HARD_BIN=1, SOFT_BIN=11, X_COORD=-32768, Y_COORD=5, TEST_T=100, PART_ID="b"),
        r("PIR", SITE_NUM=4),
        r("PTR", TEST_NUM=10, SITE_NUM=4, RESULT=4.0, TEST_TXT="idd", upto="TEST_TXT"),
        r("MPR", TEST_NUM=30, SITE_NUM=3, RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[1, 2], RTN_RSLT=[0.5, 0.25],
          TEST_TXT="leak", LO_LIMIT=0.0, HI_LIMIT=1.0, RTN_INDX=[7, 9], UNITS="uA"),
        r("FTR", TEST_NUM=40, SITE_NUM=4, TEST_FLG=0x80, TEST_TXT="func"),
        r("FTR", TEST_NUM=40, SITE_NUM=1, TEST_FLG=0x40, TEST_TXT="func"),
        r("FTR", TEST_NUM=40, SITE_NUM=3, upto="TEST_FLG"),
        r("PRR", SITE_NUM=1, PART_FLG=0x08, HARD_BIN=5, X_COORD=1, Y_COORD=2, TEST_T=300, PART_ID="a"),
        r("PRR", SITE_NUM=3, PART_FLG=0x10, HARD_BIN=1, X_COORD=3, Y_COORD=-32768, PART_ID=""),
        r("PRR", SITE_NUM=4, HARD_BIN=1, X_COORD=4, Y_COORD=4, TEST_T=50, PART_ID="d"),
        r("PIR", SITE_NUM=1),
        r("PTR", TEST_NUM=10, SITE_NUM=1, RESULT=1.5, TEST_TXT="idd", OPT_FLAG=0x30, LO_LIMIT=99.0),
        r("MPR", TEST_NUM=30, SITE_NUM=1, RTN_ICNT=0, RSLT_CNT=2, RTN_RSLT=[0.1, 0.2], upto="RTN_RSLT"),
        r("PRR", SITE_NUM=1, HARD_BIN=1, TEST_T=200, PART_ID="e"),
        r("WRR", WAFER_ID="W7"), r("MRR"),
    ])


@pytest.mark.parametrize("endian", [">", "<"])
def test_interleaved_sites_pair_with_their_own_pir(endian):
    reader = StdfReader(multisite(endian), name="multi.stdf")
    parts = {r["part_id"]: r for r in reader}
    assert list(parts) == ["b", "a", "3", "d", "e"]  # PRR order; empty PART_ID -> PRR ordinal
    b, a, c, d, e = parts.values()
    assert b["tests"] == {"10:idd": 2.0, "20:vt": -1.0}
    assert a["tests"] == {"10:idd": 1.0, "20:vt": None, "40:func": None}  # PARM_FLG bit 2; FTR bit 6
    # sentinel kept (as the float32 the file holds); the short FTR takes the test's first name
    assert c["tests"] == {"10:idd": None, "20:vt": struct.unpack("f", struct.pack("f", 9.9e37))[0],
                          "30:leak[7]": 0.5, "30:leak[9]": 0.25, "40:func": 1.0}
    assert d["tests"] == {"10:idd": 4.0, "40:func": 0.0}
    assert e["tests"] == {"10:idd": 1.5, "30:leak[7]": pytest.approx(0.1), "30:leak[9]": pytest.approx(0.2)}
    # limits ride once, on the first record emitted after them that has the test: b's PRR
    # comes before a's, so b carries the limits of 10:idd that a's PTR brought
    assert b["limits"] == {"10:idd": {"lo": 0.0, "hi": 5.0, "units": "mA"},
                           "20:vt": {"lo": None, "hi": 9.0, "units": ""}}
    assert c["limits"] == {"30:leak[7]": {"lo": 0.0, "hi": 1.0, "units": "uA"},
                           "30:leak[9]": {"lo": 0.0, "hi": 1.0, "units": "uA"}}
    assert "limits" not in a and "limits" not in d and "limits" not in e
    assert (b["x"], b["y"], c["x"], c["y"], a["x"], a["y"]) == (None, 5, 3, None, 1, 2)
    assert (a["passed"], b["passed"], c["passed"]) == (False, True, None)
    assert (b["soft_bin"], a["soft_bin"]) == (11, None)
    assert {(r["head"], r["site"]) for r in parts.values()} == {(1, 1), (1, 2), (1, 3), (1, 4)}
    assert {(r["lot_id"], r["wafer_id"], r["tester"], r["fab"], r["test_program"], r["test_program_rev"])
            for r in parts.values()} == {("L1", "W7", "T9", "F2", "p", "3")}
    # ts: WIR START_T plus the cumulative TEST_T of the part's site
    assert (b["ts"], a["ts"], c["ts"], e["ts"]) == (1_700_000_100.1, 1_700_000_100.3, 1_700_000_100.0, 1_700_000_100.5)
    assert "test_time_ms" not in c and a["test_time_ms"] == 300
    assert all(validate_record(r) is None for r in parts.values())
    assert orjson.loads(orjson.dumps(c))["tests"]["10:idd"] is None


def test_each_head_keeps_its_own_clock():
    def part(head, part_id, test_t):
        return [record("PIR", HEAD_NUM=head), record("PTR", HEAD_NUM=head, TEST_NUM=1, RESULT=1.0),
                record("PRR", HEAD_NUM=head, TEST_T=test_t, PART_ID=part_id)]

    data = b"".join([
        record("FAR"), record("MIR", START_T=1000, LOT_ID="L"),
        record("WIR", HEAD_NUM=1, START_T=1_000_000, WAFER_ID="W1"),
        record("PIR", HEAD_NUM=1), record("PTR", HEAD_NUM=1, TEST_NUM=1, RESULT=1.0),
        record("WIR", HEAD_NUM=2, START_T=2_000_000, WAFER_ID="W2"),  # while head 1's part is open
        *part(2, "b", 300), record("PRR", HEAD_NUM=1, TEST_T=500, PART_ID="a"), *part(1, "c", 200),
        record("WIR", HEAD_NUM=1, START_T=3_000_000, WAFER_ID="W3"),
        *part(1, "d", 100), *part(2, "e", 100), *part(3, "f", 100)])
    ts = {r["part_id"]: (r["wafer_id"], r["ts"]) for r in StdfReader(data, name="heads.stdf")}
    assert ts == {"b": ("W2", 2_000_000.3), "a": ("W1", 1_000_000.5), "c": ("W1", 1_000_000.7),
                  "d": ("W3", 3_000_000.1), "e": ("W2", 2_000_000.4),
                  "f": ("W3", 1000.1)}  # no WIR of its own: the latest wafer, the MIR's clock


def _part(head: int, part_id: str) -> list[bytes]:
    return [record("PIR", HEAD_NUM=head), record("PTR", HEAD_NUM=head, TEST_NUM=1, RESULT=1.0),
            record("PRR", HEAD_NUM=head, PART_ID=part_id)]


@pytest.mark.parametrize("wrr, wafer", [(dict(WAFER_ID="W07"), "W07"), (dict(WAFER_ID=""), "1"),
                                        (dict(upto="FUNC_CNT"), "1"), (None, "1")],
                         ids=["named by the WRR", "WRR without ID", "WRR cut before WAFER_ID", "no WRR"])
def test_a_wafer_named_only_in_its_wrr_gets_that_name(wrr, wafer):
    """Parts of a WIR without WAFER_ID wait for the WRR (another head's parts do not); without
    an ID there either they keep the WIR's ordinal."""
    data = b"".join([
        record("FAR"), record("MIR", LOT_ID="L"), record("WIR", HEAD_NUM=1, WAFER_ID=""), *_part(1, "a"),
        record("WIR", HEAD_NUM=2, WAFER_ID="W2"), *_part(2, "b"), *_part(1, "c"),
        *([] if wrr is None else [record("WRR", HEAD_NUM=1, **wrr)]),
        record("WIR", HEAD_NUM=1, WAFER_ID="W3"), *_part(1, "d")])
    reader = StdfReader(data, name="wrr.stdf")
    got = [(r["part_id"], r["wafer_id"]) for r in reader]
    a_and_c = [("a", wafer), ("c", wafer)]
    assert got == [("b", "W2"), *a_and_c, ("d", "W3")] and reader.stats.parts == 4


def test_a_head_without_a_wir_waits_with_the_wafer_it_takes():
    """Head 2 has no WIR, so its parts take the latest WIR's wafer: they wait for its WRR too
    (one wafer, one id)."""
    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("WIR", HEAD_NUM=1, WAFER_ID=""),
                     *_part(1, "a"), *_part(2, "b"), record("WRR", HEAD_NUM=1, WAFER_ID="W07"), *_part(2, "c")])
    got = [(r["part_id"], r["wafer_id"]) for r in StdfReader(data, name="heads.stdf")]
    assert got == [("a", "W07"), ("b", "W07"), ("c", "W07")]


def test_parts_waiting_for_a_wrr_are_given_before_a_corrupt_record_stops_the_file():
    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("WIR", WAFER_ID=""), *_part(1, "a"),
                     record("PRR", upto="HEAD_NUM")])
    got = []
    with pytest.raises(StdfError, match="record too short"):
        for r in StdfReader(data, name="bad.stdf"):
            got.append((r["part_id"], r["wafer_id"]))
    assert got == [("a", "1")]


def test_both_byte_orders_give_the_same_records():
    assert list(StdfReader(multisite(">"))) == list(StdfReader(multisite("<")))


def test_pir_without_prr_and_prr_without_tests_are_counted_not_emitted():
    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("PIR"),
                     record("PTR", TEST_NUM=1, RESULT=1.0), record("PIR"), record("PRR", PART_ID="1"),
                     record("PIR", SITE_NUM=2), record("PTR", TEST_NUM=1, SITE_NUM=2, RESULT=2.0)])
    reader = StdfReader(data, name="x")
    assert list(reader) == []
    assert (reader.stats.parts_without_tests, reader.stats.unclosed_parts) == (1, 2)


def test_a_retest_names_what_it_supersedes_and_is_counted(tmp_path):
    """PRR ``PART_FLG`` bit 0: the part replaces the earlier one with its PART_ID; bit 1: the
    earlier one at its X, Y. Both were published as parts of their own, with nothing to tell
    the retrain window that the first result was superseded."""
    def part(part_id, flags, x=3):
        return [record("PIR"), record("PTR", TEST_NUM=1, RESULT=1.0),
                record("PRR", PART_FLG=flags, X_COORD=x, Y_COORD=7, PART_ID=part_id)]

    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("WIR", WAFER_ID="W"),
                     *part("1", 0x08), *part("2", 0x00, x=4), *part("1", 0x01), *part("3", 0x02 | 0x08),
                     record("MRR")])
    reader = StdfReader(data, name="retest.stdf")
    parts = [(r["part_id"], r.get("supersedes"), r["passed"]) for r in reader]
    assert parts == [("1", None, False), ("2", None, True), ("1", "part", True), ("3", "die", False)]
    assert reader.stats.retests == 2
    (tmp_path / "retest.stdf").write_bytes(data)
    result = convert([tmp_path / "retest.stdf"], tmp_path / "parts.jsonl", progress=False)
    assert result.files[0].summary("written").endswith("; 2 retests superseding an earlier part")


@pytest.mark.parametrize("ending", ["another PIR on its site", "end of file, another site closed"])
def test_limits_from_a_part_no_prr_closes_ride_on_the_next_record_with_the_test(ending):
    ptr = lambda site, **kw: record("PTR", TEST_NUM=7, SITE_NUM=site, TEST_TXT="vdd", **kw)  # noqa: E731
    with_limits = ptr(1, RESULT=1.0, LO_LIMIT=0.5, HI_LIMIT=2.5, UNITS="V")
    if ending == "another PIR on its site":
        parts = [record("PIR"), with_limits, record("PIR"), ptr(1, RESULT=2.0, upto="TEST_TXT"),
                 record("PRR", PART_ID="2")]
    else:
        parts = [record("PIR"), record("PIR", SITE_NUM=2), with_limits, ptr(2, RESULT=2.0, upto="TEST_TXT"),
                 record("PRR", SITE_NUM=2, PART_ID="2")]
    later = [record("PIR", SITE_NUM=3), ptr(3, RESULT=3.0, upto="TEST_TXT"), record("PRR", SITE_NUM=3, PART_ID="3")]
    reader = StdfReader(b"".join([record("FAR"), record("MIR", LOT_ID="L"), *parts, *later]), name="x")
    records = list(reader)
    assert [r["part_id"] for r in records] == ["2", "3"] and reader.stats.unclosed_parts == 1
    assert records[0]["limits"] == {"7:vdd": {"lo": 0.5, "hi": 2.5, "units": "V"}}
    assert "limits" not in records[1]  # sent once


def limits_of(source) -> dict:
    """Every test's limits, from the records that carry them."""
    return {key: value for part in StdfReader(source) for key, value in part.get("limits", {}).items()}


@needs_data
def test_a_first_ptr_that_ends_at_opt_flag_leaves_the_limits_to_a_later_ptr(tmp_path):
    """A first PTR cut after OPT_FLAG gives no limits, only defaults it lacks: the limits were
    cached as null from it and the real ones of every later PTR ignored."""
    data, out, seen = load("lot2.stdf.gz"), [], set()
    for start, end in zip(record_starts(data), record_starts(data)[1:] + [len(data)]):
        rec = data[start:end]
        if rec[2:4] == b"\x0f\x0a" and rec[4:8] not in seen:  # a test's first PTR (lot2 is big-endian)
            seen.add(rec[4:8])
            body = rec[4:]
            alarm_id = 13 + body[12]  # after TEST_TXT
            body = body[:alarm_id + 1 + body[alarm_id] + 1]  # up to OPT_FLAG (0x0E: no bit says "no limit")
            rec = struct.pack(">HBB", len(body), 15, 10) + body
        out.append(rec)
    (tmp_path / "opt.stdf").write_bytes(b"".join(out))
    limits = limits_of(tmp_path / "opt.stdf")
    assert len(seen) == len(limits) == LOT2_TESTS
    assert limits == limits_of(STDF_DIR / "lot2.stdf.gz")
    ptr = lambda **kw: record("PTR", TEST_NUM=7, TEST_TXT="vdd", RESULT=1.0, **kw)  # noqa: E731
    none = [record("FAR"), record("MIR"), record("PIR"), ptr(OPT_FLAG=0xC2, upto="OPT_FLAG"),
            record("PIR", SITE_NUM=2), ptr(SITE_NUM=2, LO_LIMIT=0.5, HI_LIMIT=2.5), record("PRR"),
            record("PRR", SITE_NUM=2)]
    assert limits_of(b"".join(none)) == {"7:vdd": {"lo": None, "hi": None, "units": ""}}  # bits 6, 7: none


def test_unsupported_inputs_are_refused():
    with pytest.raises(StdfError, match="x.stdf: not an STDF file"):
        list(StdfReader(b"hello world", name="x.stdf"))
    with pytest.raises(StdfError, match="empty file"):
        list(StdfReader(b"", name="x.stdf"))
    with pytest.raises(StdfError, match="CPU_TYPE 0"):
        list(StdfReader(record("FAR", CPU_TYPE=0), name="x.stdf"))
    with pytest.raises(StdfError, match="STDF version 3"):
        list(StdfReader(record("FAR", STDF_VER=3), name="x.stdf"))
    with pytest.raises(StdfError, match=r"PRR\) before the MIR"):
        list(StdfReader(record("FAR") + record("PIR") + record("PTR") + record("PRR"), name="x.stdf"))


# -- truncated and corrupt files ----------------------------------------------------------


def record_starts(data: bytes) -> list[int]:
    e = ">" if data[4] == 1 else "<"
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 4 + struct.unpack_from(e + "H", data, pos)[0]
    return starts


@needs_data
@pytest.mark.parametrize("record_index,cut_into", [(5, 2), (40, 9), (-30, 4), (-1, 1)])
def test_truncated_file_names_file_and_offset(tmp_path, record_index, cut_into):
    data = load("makechip_d10_1.std")
    start = record_starts(data)[record_index]
    path = tmp_path / "cut.std"
    path.write_bytes(data[:start + cut_into])
    with pytest.raises(StdfError) as info:
        list(StdfReader(path))
    assert info.value.offset == start
    assert str(info.value).startswith(f"cut.std: truncated record {'header ' if cut_into < 4 else ''}at byte {start}")


@needs_data
def test_truncated_gzip_stream_and_truncated_record_in_gzip(tmp_path):
    raw = load("lot2.stdf.gz")
    starts = record_starts(raw)
    cut = starts[len(starts) // 2] + 7
    (tmp_path / "a.stdf.gz").write_bytes(gzip.compress(raw[:cut]))
    with pytest.raises(StdfError, match=rf"a.stdf.gz: truncated record at byte {starts[len(starts) // 2]} \(REC_TYP"):
        list(StdfReader(tmp_path / "a.stdf.gz"))
    packed = (STDF_DIR / "lot2.stdf.gz").read_bytes()
    (tmp_path / "b.stdf.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(StdfError, match="b.stdf.gz: corrupt or truncated compressed data"):
        list(StdfReader(tmp_path / "b.stdf.gz"))


def parts_until_error(source, name: str) -> tuple[list, StdfError]:
    got = []
    with pytest.raises(StdfError) as info:
        for part in StdfReader(source, name=name):
            got.append(part)
    return got, info.value


@needs_data
@pytest.mark.parametrize("kind", ["gz", "bz2"])
def test_a_cut_archive_gives_every_part_before_the_cut(kind):
    """The decompressor's error came with the last chunk read, so up to 1 MiB of good data before
    it was never read (lot2 cut in half lost 14 parts) and the offset was that chunk's end."""
    raw = load("lot2.stdf.gz")
    packed = gzip.compress(raw) if kind == "gz" else bz2.compress(raw)
    cut = packed[:len(packed) // 2]
    readable = (zlib.decompressobj(16 + zlib.MAX_WBITS) if kind == "gz" else bz2.BZ2Decompressor()).decompress(cut)
    expected, _ = parts_until_error(readable, "prefix")
    got, error = parts_until_error(cut, f"cut.{kind}")
    assert len(got) == len(expected) > 300 and got == expected
    assert str(error).startswith(f"cut.{kind}: corrupt or truncated compressed data (")
    assert error.offset == len(readable)


def test_corrupt_records_name_the_record():
    data = bytearray(multisite("<"))
    starts = record_starts(bytes(data))
    ptr = starts[6]  # the first PTR
    bad_text = bytearray(data)
    bad_text[ptr + 16] = 200  # TEST_TXT length beyond the record
    with pytest.raises(StdfError, match=rf"m.stdf: corrupt record: TEST_TXT .* byte {ptr} \(REC_TYP 15 REC_SUB 10\)"):
        list(StdfReader(bytes(bad_text), name="m.stdf"))
    bad_type = bytearray(data)
    bad_type[ptr + 2] = 99
    with pytest.raises(StdfError, match=rf"unknown record type .* at byte {ptr} \(REC_TYP 99"):
        list(StdfReader(bytes(bad_type), name="m.stdf"))
    prr = starts[12]
    after_prr = prr + 4 + struct.unpack_from("<H", data, prr)[0]
    short_prr = bytes(data[:prr]) + struct.pack("<HBB", 1, 5, 20) + b"\x01" + bytes(data[after_prr:])
    with pytest.raises(StdfError, match=rf"too short .* at byte {prr} \(REC_TYP 5 REC_SUB 20\)"):
        list(StdfReader(short_prr, name="m.stdf"))


def cut(rec: bytes, rec_len: int) -> bytes:
    """``rec`` (little-endian) with its body cut to ``rec_len`` bytes and REC_LEN saying so."""
    return struct.pack("<H", rec_len) + rec[2:4 + rec_len]


PTR_ALL = dict(TEST_NUM=5, RESULT=1.5, TEST_TXT="vdd", ALARM_ID="0123456789", LO_LIMIT=1.0, HI_LIMIT=2.0,
               UNITS="Volts")
MPR_ALL = dict(TEST_NUM=6, RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[1, 2], RTN_RSLT=[0.5, 0.25], TEST_TXT="leak",
               RTN_INDX=[7, 9], UNITS="uA")
FTR_ALL = dict(TEST_NUM=8, FAIL_PIN=b"\x01\x02", TEST_TXT="func")


@pytest.mark.parametrize("name,values,rec_len,field,size,at", [
    pytest.param("PTR", dict(TEST_NUM=5, RESULT=1.5), 10, "RESULT", 4, 8, id="PTR RESULT 2 of 4 bytes"),
    pytest.param("PTR", PTR_ALL, 13, "TEST_TXT", 4, 12, id="PTR TEST_TXT length byte only"),
    pytest.param("PTR", PTR_ALL, 17, "ALARM_ID", 11, 16, id="PTR ALARM_ID length byte only"),
    pytest.param("PTR", PTR_ALL, 20, "ALARM_ID", 11, 16, id="PTR ALARM_ID 3 of 10 characters"),
    pytest.param("PTR", PTR_ALL, 33, "LO_LIMIT", 4, 31, id="PTR LO_LIMIT 2 of 4 bytes"),
    pytest.param("PTR", PTR_ALL, 41, "UNITS", 6, 39, id="PTR UNITS 1 of 5 characters"),
    pytest.param("MPR", MPR_ALL, 19, "RTN_RSLT", 8, 13, id="MPR RTN_RSLT 6 of 8 bytes"),
    pytest.param("MPR", MPR_ALL, 49, "RTN_INDX", 4, 47, id="MPR RTN_INDX 2 of 4 bytes"),
    pytest.param("MPR", MPR_ALL, 52, "UNITS", 3, 51, id="MPR UNITS length byte only"),
    pytest.param("FTR", FTR_ALL, 40, "FAIL_PIN", 4, 38, id="FTR FAIL_PIN bit count only"),
    pytest.param("FTR", FTR_ALL, 46, "TEST_TXT", 5, 45, id="FTR TEST_TXT length byte only"),
    pytest.param("PRR", dict(PART_ID="17"), 18, "PART_ID", 3, 17, id="PRR PART_ID length byte only"),
    pytest.param("WIR", dict(WAFER_ID="W1"), 7, "WAFER_ID", 3, 6, id="WIR WAFER_ID length byte only"),
])
def test_a_field_cut_by_the_end_of_its_record_is_corrupt(name, values, rec_len, field, size, at):
    """A record may end early only between fields; a field it cuts names itself and where it starts."""
    head = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("PIR"), record("PTR", TEST_NUM=1)])
    data = head + cut(record(name, **values), rec_len) + record("PRR")
    typ, sub, _ = RECORDS[name]
    with pytest.raises(StdfError) as info:
        list(StdfReader(data, name="c.stdf"))
    assert str(info.value) == (f"c.stdf: corrupt record: {field} runs past the end of the record "
                               f"({size} bytes at +{at}, REC_LEN {rec_len}) at byte {len(head)} "
                               f"(REC_TYP {typ} REC_SUB {sub})")


def field_ends(name: str, first: str) -> list[tuple[str, str]]:
    """(record, field) for each field of ``name`` from ``first`` on: where a record may end."""
    fields = [f for f, _, _ in RECORDS[name][2]]
    return [(name, f) for f in fields[fields.index(first):]]


@pytest.mark.parametrize("name,last", field_ends("PTR", "TEST_FLG") + field_ends("MPR", "TEST_FLG")
                         + field_ends("FTR", "TEST_FLG") + field_ends("PRR", "SITE_NUM"))
def test_a_record_may_end_after_any_optional_field(name, last):
    values = {"PTR": PTR_ALL, "MPR": MPR_ALL, "FTR": FTR_ALL, "PRR": dict(PART_ID="17")}[name]
    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("PIR"), record("PTR", TEST_NUM=1),
                     record(name, upto=last, **values), record("PRR")])
    assert len(list(StdfReader(data))) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_fail_only_with_stdf_error(data):
    original = multisite(data.draw(st.sampled_from(["<", ">"])))
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    blob = blob[:data.draw(st.integers(0, len(blob)))]
    try:
        records = list(StdfReader(bytes(blob), name="fuzz.stdf"))
    except StdfError as exc:
        assert str(exc).startswith("fuzz.stdf: ")
        return
    assert all(validate_record(r) is None for r in records)
    orjson.dumps(records)


# -- compressed inputs --------------------------------------------------------------------


@needs_data
def test_gz_bz2_and_zip_read_like_the_plain_file(tmp_path):
    raw = load("lot2.stdf.gz")
    expected = list(StdfReader(raw, name="plain"))
    assert expected == list(StdfReader(STDF_DIR / "lot2.stdf.gz"))
    (tmp_path / "l.stdf.bz2").write_bytes(bz2.compress(raw))
    with zipfile.ZipFile(tmp_path / "l.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("lot2.stdf", raw)
    assert list(StdfReader(tmp_path / "l.stdf.bz2")) == expected
    assert list(StdfReader(tmp_path / "l.zip")) == expected
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.stdf", raw[:100])
        z.writestr("b.stdf", raw[:100])
    with pytest.raises(StdfError, match="two.zip: zip archive must hold exactly one file, it holds 2"):
        list(StdfReader(tmp_path / "two.zip"))


def test_an_empty_zip_says_it_holds_no_file(tmp_path, capsys):
    """An empty archive starts with its end record, not a file's: it said "not an STDF file"."""
    zipfile.ZipFile(tmp_path / "empty.zip", "w").close()
    assert main(["stdf", "convert", str(tmp_path / "empty.zip"), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("error: empty.zip: zip archive must hold exactly one file, "
                                              "it holds 0: ")


@pytest.mark.parametrize("change, reason", [(("method", 9), "That compression method is not supported"),
                                            (("flags", 1), "is encrypted, password required")],
                         ids=["Deflate64", "encrypted"])
def test_a_zip_member_python_cannot_read_is_one_clear_error(tmp_path, change, reason):
    """Windows zips large files with Deflate64; a zip may be encrypted: both were a traceback."""
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.stdf", multisite("<"))
    data = bytearray(path.read_bytes())
    field, value = change
    for header, at in ((b"PK\x03\x04", {"flags": 6, "method": 8}), (b"PK\x01\x02", {"flags": 8, "method": 10})):
        start = data.find(header) + at[field]
        data[start:start + 2] = struct.pack("<H", struct.unpack_from("<H", data, start)[0] | value)
    path.write_bytes(bytes(data))
    with pytest.raises(StdfError, match=rf"x.zip: cannot read a.stdf in the zip archive \(.*{reason}"):
        list(StdfReader(path))


@needs_data
@pytest.mark.parametrize("name", ["makechip_d10_1.std", "lot2.stdf.gz"])
@pytest.mark.parametrize("buffering", [0, -1])  # a raw pipe, a buffered one
def test_pipe_reads_like_the_file(name, buffering):
    data = (STDF_DIR / name).read_bytes()
    read_fd, write_fd = os.pipe()

    def feed():  # from a thread: the file is larger than the pipe's buffer
        with open(write_fd, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with open(read_fd, "rb", buffering=buffering) as pipe:
        assert not pipe.seekable()
        parts = list(StdfReader(pipe, name=name))
    writer.join()
    assert parts == list(StdfReader(STDF_DIR / name))


def test_a_zip_from_a_pipe_is_refused_with_the_reason(tmp_path):
    """A zip's directory is at its end: from a pipe it said "File is not a zip file"."""
    with zipfile.ZipFile(tmp_path / "x.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.stdf", multisite("<"))
    assert list(StdfReader(tmp_path / "x.zip")) == list(StdfReader(multisite("<")))
    read_fd, write_fd = os.pipe()
    with open(write_fd, "wb") as out:
        out.write((tmp_path / "x.zip").read_bytes())  # smaller than the pipe's buffer
    with open(read_fd, "rb") as pipe, pytest.raises(StdfError, match="x.zip: a zip archive cannot be read from a "
                                                                     "pipe .*: pipe the unzipped file instead"):
        list(StdfReader(pipe, name="x.zip"))


def test_small_chunks_give_the_same_records():
    data = multisite("<")
    assert list(StdfReader(data, chunk_size=7)) == list(StdfReader(data))


# -- convert and the command line ---------------------------------------------------------


@needs_data
def test_convert_writes_one_message_per_part(tmp_path):
    out = tmp_path / "parts.jsonl"
    result = convert([STDF_DIR / "lot2.stdf.gz", STDF_DIR / "makechip_d10_1.std"], out, progress=False)
    assert [(f.file, f.parts) for f in result.files] == [("lot2.stdf.gz", 784), ("makechip_d10_1.std", 1)]
    messages = list(read_recording(str(out)))
    assert len(messages) == result.parts == 785
    for message in messages[:50] + messages[-1:]:
        rec = orjson.loads(message.value)
        assert validate_record(rec) is None
        assert message.key == part_key(rec).encode()
        assert message.timestamp == round(rec["ts"] * 1000)
        assert message.headers[0] == ("source", b"stdf") and message.headers[1][0] == "file"
        assert message.partition is None
    assert messages[-1].headers[1] == ("file", b"makechip_d10_1.std")


@needs_data
@pytest.mark.parametrize("key", ["wafer", "lot"])
def test_convert_keys_by_wafer_or_lot_on_request(tmp_path, key):
    """``--key wafer`` (``lot``): a wafer's (lot's) parts share one key, so one partition holds them in order."""
    out = tmp_path / "keyed.jsonl"
    assert main(["stdf", "convert", str(STDF_DIR / "lot2.stdf.gz"), "--out", str(out), "--key", key,
                 "--quiet"]) == 0
    messages = list(read_recording(str(out)))
    assert len(messages) == 784
    for message in messages:
        rec = orjson.loads(message.value)
        assert message.key == (f"{rec['lot_id']}/{rec['wafer_id']}" if key == "wafer" else rec["lot_id"]).encode()


@needs_data
def test_convert_stops_at_a_bad_file_and_says_what_was_written(tmp_path):
    data = load("makechip_d10_1.std")
    prr = next(s for s in record_starts(data) if data[s + 2:s + 4] == b"\x05\x14")
    (tmp_path / "bad.std").write_bytes(data[:prr + 5])  # inside its only PRR
    out = tmp_path / "parts.jsonl"
    with pytest.raises(StdfError) as info:
        convert([STDF_DIR / "lot2.stdf.gz", tmp_path / "bad.std"], out, progress=False)
    assert str(info.value).endswith(f"784 parts were written to {out} before the error")
    assert info.value.result.parts == 784 and info.value.result.error
    assert len(list(read_recording(str(out)))) == 784


@needs_data
def test_cli_convert(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["stdf", "convert", str(STDF_DIR / "makechip_x.stdf"), "--out", str(out)]) == 0
    assert "makechip_x.stdf: 1 part written (1 PRR, " in capsys.readouterr().err  # was "1 parts", "1 PRRs"
    (tmp_path / "cut.stdf").write_bytes(load("makechip_x.stdf")[:1000])
    assert main(["stdf", "convert", str(STDF_DIR / "makechip_x.stdf"), str(tmp_path / "cut.stdf"),
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cut.stdf: truncated record at byte 988 (REC_TYP 50 REC_SUB 10, REC_LEN 16, "
                   f"8 bytes left): 1 part was written to {out} before the error"]
    assert main(["stdf", "convert", str(tmp_path / "missing.stdf"), "--out", str(out)]) == 2


@needs_data
def test_a_file_cut_at_a_record_boundary_is_read_with_a_warning(tmp_path, capsys):
    """A partial copy (or a file still being written) ends without its MRR: it read as
    complete, exit 0 and not a word about the part it cut."""
    data = load("lot2.stdf.gz")
    starts = record_starts(data)
    ptrs = [s for s in starts[len(starts) // 2:] if data[s + 2:s + 4] == b"\x0f\x0a"]
    (tmp_path / "cut.stdf").write_bytes(data[:ptrs[10]])  # inside a part: its PIR came, its PRR did not
    out = tmp_path / "p.jsonl"
    assert main(["stdf", "convert", str(tmp_path / "cut.stdf"), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: cut.stdf: no MRR, so the file may be incomplete (a partial copy, or still being written); "
        "1 part was left open (a PIR without its PRR)"]
    reader = StdfReader(tmp_path / "cut.stdf")
    assert len(list(read_recording(str(out)))) == len(list(reader)) > 0  # the whole parts are written
    assert (reader.stats.mrr, reader.stats.left_open) == (0, 1)
    assert convert([tmp_path / "cut.stdf"], out, progress=False).files[0].summary("written").endswith(
        "; 1 part without a PRR skipped; no MRR (may be incomplete)")
    assert capsys.readouterr().err.startswith("warning: cut.stdf: no MRR")  # without progress lines too
    assert main(["stdf", "convert", str(STDF_DIR / "lot2.stdf.gz"), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@needs_data
def test_convert_stopped_by_ctrl_c_or_sigterm_says_how_many_parts_were_written(tmp_path, monkeypatch, capsys):
    """It exited 130 without a word, though the recording held parts."""
    from stream_ct import recording

    to_line, handlers = recording.message_to_line, []

    def line_or_stop(message):
        handlers.append(signal.getsignal(signal.SIGTERM))
        if len(handlers) > 100:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM by its handler, while writing the 101st part
        return to_line(message)

    monkeypatch.setattr(recording, "message_to_line", line_or_stop)
    out = tmp_path / "p.jsonl"
    with pytest.raises(KeyboardInterrupt):  # stream_ct.cli turns it into exit 130
        main(["stdf", "convert", str(STDF_DIR / "lot2.stdf.gz"), "--out", str(out), "--quiet"])
    assert capsys.readouterr().err == (f"stopped during lot2.stdf.gz: 100 parts were written to {out}, "
                                       f"100 of them from lot2.stdf.gz\n")
    assert len(list(read_recording(str(out)))) == 100
    assert handlers[-1] is signal.default_int_handler  # SIGTERM stops it as Ctrl-C does
    assert signal.getsignal(signal.SIGTERM) is not signal.default_int_handler


@needs_data
def test_cli_reads_a_pipe_and_refuses_a_directory(tmp_path, capsys):
    """A FIFO or /dev/stdin is not a regular file but reads like one (it said 'no such file')."""
    fifo, out = tmp_path / "in.stdf", tmp_path / "p.jsonl"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as pipe:
            pipe.write((STDF_DIR / "lot2.stdf.gz").read_bytes())

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert main(["stdf", "convert", str(fifo), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    finally:
        if writer.is_alive():  # refused without opening it: let the writer go
            open(fifo, "rb").close()
        writer.join()
    assert len(list(read_recording(str(out)))) == 784
    assert main(["stdf", "convert", str(tmp_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: is a directory, not an STDF file"


@needs_data
def test_cli_convert_refuses_to_write_over_its_input(tmp_path, capsys):
    """``--out`` naming the input emptied the STDF file before reading it ("empty file")."""
    stdf = tmp_path / "x.stdf"
    stdf.write_bytes(load("makechip_x.stdf"))
    assert main(["stdf", "convert", str(stdf), "--out", f"{tmp_path}/./x.stdf", "--quiet"]) == 2
    assert stdf.read_bytes() == load("makechip_x.stdf")
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path}/./x.stdf is the input file {stdf}")


class Terminal(io.StringIO):
    def isatty(self):
        return True


@needs_data
def test_cli_error_on_a_terminal_starts_its_own_line(tmp_path, monkeypatch):
    """The progress line of the file that failed was left there, the error glued to its end."""
    (tmp_path / "cut.stdf.gz").write_bytes(gzip.compress(load("lot2.stdf.gz")[:2_500_000]))
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["stdf", "convert", str(tmp_path / "cut.stdf.gz"), "--out", str(tmp_path / "p.jsonl")]) == 2
    screen = terminal.getvalue()
    assert screen.startswith("\rcut.stdf.gz: ") and " parts" in screen  # the progress line was drawn
    assert screen.rsplit("\r", 1)[1].startswith("\033[Kerror: cut.stdf.gz: truncated record at byte ")


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["stdf", "publish", "--help"])
    assert "example: stream-ct stdf publish" in capsys.readouterr().out


def test_ptr_cut_before_its_result_counts_and_reads_as_none():
    data = b"".join([record("FAR"), record("MIR", LOT_ID="L"), record("PIR"),
                     record("PTR", TEST_NUM=5, TEST_TXT="a", RESULT=1.0), record("PRR", PART_ID="1"),
                     record("PIR"), record("PTR", TEST_NUM=5, upto="TEST_FLG"), record("PRR", PART_ID="2")])
    reader = StdfReader(data, chunk_size=16)
    assert [r["tests"] for r in reader] == [{"5:a": 1.0}, {"5:a": None}]
    assert reader.stats.ptr == 2
