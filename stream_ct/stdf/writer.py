"""Write small STDF V4 records and files: fixtures for tests and simulators.

Fields follow the STDF V4 order; a field not given takes its default, and ``upto`` cuts
the record after a field, as writers do for PTRs that repeat a test without its limits.
Array fields (``RTN_RSLT``, ``RTN_INDX``, ...) take lists; their count fields are given
explicitly, so a test can also write inconsistent records.

>>> record("PIR", HEAD_NUM=1, SITE_NUM=2).hex(" ")  # REC_LEN 2, REC_TYP 5, REC_SUB 10
'02 00 05 0a 01 02'
>>> from stream_ct.stdf.reader import StdfReader
>>> [r["part_id"] for r in StdfReader(example_file(">"))]
['2', '1']
"""

from __future__ import annotations

import struct

_SCALARS = {"U1": "B", "I1": "b", "U2": "H", "I2": "h", "U4": "I", "I4": "i", "R4": "f"}

#: name -> (REC_TYP, REC_SUB, [(field, type, default), ...]) for the records the reader uses.
RECORDS: dict[str, tuple[int, int, list[tuple[str, str, object]]]] = {
    "FAR": (0, 10, [("CPU_TYPE", "U1", 2), ("STDF_VER", "U1", 4)]),
    "MIR": (1, 10, [("SETUP_T", "U4", 0), ("START_T", "U4", 0), ("STAT_NUM", "U1", 1),
                    ("MODE_COD", "C1", " "), ("RTST_COD", "C1", " "), ("PROT_COD", "C1", " "),
                    ("BURN_TIM", "U2", 65535), ("CMOD_COD", "C1", " ")]
                   + [(f, "Cn", "") for f in (
                       "LOT_ID", "PART_TYP", "NODE_NAM", "TSTR_TYP", "JOB_NAM", "JOB_REV",
                       "SBLOT_ID", "OPER_NAM", "EXEC_TYP", "EXEC_VER", "TEST_COD", "TST_TEMP",
                       "USER_TXT", "AUX_FILE", "PKG_TYP", "FAMLY_ID", "DATE_COD", "FACIL_ID",
                       "FLOOR_ID", "PROC_ID")]),
    "MRR": (1, 20, [("FINISH_T", "U4", 0)]),
    "PMR": (1, 60, [("PMR_INDX", "U2", 1), ("CHAN_TYP", "U2", 0), ("CHAN_NAM", "Cn", ""), ("PHY_NAM", "Cn", ""),
                    ("LOG_NAM", "Cn", ""), ("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1)]),
    "WIR": (2, 10, [("HEAD_NUM", "U1", 1), ("SITE_GRP", "U1", 255), ("START_T", "U4", 0),
                    ("WAFER_ID", "Cn", "")]),
    "WRR": (2, 20, [("HEAD_NUM", "U1", 1), ("SITE_GRP", "U1", 255), ("FINISH_T", "U4", 0),
                    ("PART_CNT", "U4", 0), ("RTST_CNT", "U4", 0), ("ABRT_CNT", "U4", 0),
                    ("GOOD_CNT", "U4", 0), ("FUNC_CNT", "U4", 0), ("WAFER_ID", "Cn", "")]),
    "PIR": (5, 10, [("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1)]),
    "PRR": (5, 20, [("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1), ("PART_FLG", "U1", 0),
                    ("NUM_TEST", "U2", 0), ("HARD_BIN", "U2", 1), ("SOFT_BIN", "U2", 65535),
                    ("X_COORD", "I2", -32768), ("Y_COORD", "I2", -32768), ("TEST_T", "U4", 0),
                    ("PART_ID", "Cn", ""), ("PART_TXT", "Cn", ""), ("PART_FIX", "Bn", b"")]),
    "PTR": (15, 10, [("TEST_NUM", "U4", 0), ("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1),
                     ("TEST_FLG", "U1", 0), ("PARM_FLG", "U1", 0), ("RESULT", "R4", 0.0),
                     ("TEST_TXT", "Cn", ""), ("ALARM_ID", "Cn", ""), ("OPT_FLAG", "U1", 0x0E),
                     ("RES_SCAL", "I1", 0), ("LLM_SCAL", "I1", 0), ("HLM_SCAL", "I1", 0),
                     ("LO_LIMIT", "R4", 0.0), ("HI_LIMIT", "R4", 0.0), ("UNITS", "Cn", "")]),
    "MPR": (15, 15, [("TEST_NUM", "U4", 0), ("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1),
                     ("TEST_FLG", "U1", 0), ("PARM_FLG", "U1", 0), ("RTN_ICNT", "U2", 0),
                     ("RSLT_CNT", "U2", 0), ("RTN_STAT", "xN1", []), ("RTN_RSLT", "xR4", []),
                     ("TEST_TXT", "Cn", ""), ("ALARM_ID", "Cn", ""), ("OPT_FLAG", "U1", 0x0E),
                     ("RES_SCAL", "I1", 0), ("LLM_SCAL", "I1", 0), ("HLM_SCAL", "I1", 0),
                     ("LO_LIMIT", "R4", 0.0), ("HI_LIMIT", "R4", 0.0), ("START_IN", "R4", 0.0),
                     ("INCR_IN", "R4", 0.0), ("RTN_INDX", "xU2", []), ("UNITS", "Cn", "")]),
    "FTR": (15, 20, [("TEST_NUM", "U4", 0), ("HEAD_NUM", "U1", 1), ("SITE_NUM", "U1", 1),
                     ("TEST_FLG", "U1", 0), ("OPT_FLAG", "U1", 0xFF), ("CYCL_CNT", "U4", 0),
                     ("REL_VADR", "U4", 0), ("REPT_CNT", "U4", 0), ("NUM_FAIL", "U4", 0),
                     ("XFAIL_AD", "I4", 0), ("YFAIL_AD", "I4", 0), ("VECT_OFF", "I2", 0),
                     ("RTN_ICNT", "U2", 0), ("PGM_ICNT", "U2", 0), ("RTN_INDX", "xU2", []),
                     ("RTN_STAT", "xN1", []), ("PGM_INDX", "xU2", []), ("PGM_STAT", "xN1", []),
                     ("FAIL_PIN", "Dn", b""), ("VECT_NAM", "Cn", ""), ("TIME_SET", "Cn", ""),
                     ("OP_CODE", "Cn", ""), ("TEST_TXT", "Cn", "")]),
}


def _field(kind: str, value, e: str) -> bytes:
    if kind in _SCALARS:
        return struct.pack(e + _SCALARS[kind], value)
    if kind == "C1":
        return value.encode("latin-1")[:1]
    if kind in ("Cn", "Bn"):
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return bytes([len(data)]) + data
    if kind == "Dn":
        return struct.pack(e + "H", len(value) * 8) + bytes(value)
    if kind == "xN1":
        padded = list(value) + [0] * (len(value) % 2)
        return bytes(padded[i] | (padded[i + 1] << 4) for i in range(0, len(padded), 2))
    return struct.pack(f"{e}{len(value)}{_SCALARS[kind[1:]]}", *value)


def record(name: str, endian: str = "<", upto: str | None = None, **values) -> bytes:
    """One record: header plus fields in spec order, stopping after ``upto`` if given."""
    typ, sub, fields = RECORDS[name]
    unknown = set(values) - {f for f, _, _ in fields}
    if unknown:
        raise TypeError(f"{name} has no field(s) {sorted(unknown)}")
    if name == "FAR" and "CPU_TYPE" not in values:
        values["CPU_TYPE"] = 1 if endian == ">" else 2
    body = b""
    for field, kind, default in fields:
        body += _field(kind, values.get(field, default), endian)
        if field == upto:
            break
    return struct.pack(endian + "HBB", len(body), typ, sub) + body


def example_file(endian: str = "<") -> bytes:
    """A two-site wafer-sort file: parts 1 and 2 tested at once, test 100 with limits."""
    r = lambda name, **kw: record(name, endian, **kw)  # noqa: E731
    return b"".join([
        r("FAR"),
        r("MIR", START_T=1_700_000_000, LOT_ID="LOT1", NODE_NAM="tester1", JOB_NAM="prog", JOB_REV="A"),
        r("WIR", START_T=1_700_000_000, WAFER_ID="W01"),
        r("PIR", SITE_NUM=1), r("PIR", SITE_NUM=2),
        r("PTR", TEST_NUM=100, SITE_NUM=1, RESULT=1.5, TEST_TXT="vdd", LO_LIMIT=1.0, HI_LIMIT=2.0, UNITS="V"),
        r("PTR", TEST_NUM=100, SITE_NUM=2, RESULT=9.0, TEST_FLG=0x02, TEST_TXT="vdd", upto="ALARM_ID"),
        r("PRR", SITE_NUM=2, PART_FLG=0x08, HARD_BIN=5, X_COORD=4, Y_COORD=7, PART_ID="2", TEST_T=250),
        r("PRR", SITE_NUM=1, HARD_BIN=1, X_COORD=3, Y_COORD=7, PART_ID="1", TEST_T=200),
        r("WRR", WAFER_ID="W01"), r("MRR"),
    ])
