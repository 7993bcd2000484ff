"""stream_ct.retests: a retest's record replaces the earlier ones of its part or die."""

from __future__ import annotations

from stream_ct.retests import latest_results


def _part(part_id: str, x: int | None = 3, y: int | None = 4, wafer: str = "W", **fields) -> dict:
    return {"lot_id": "L", "wafer_id": wafer, "part_id": part_id, "x": x, "y": y, **fields}


def _ids(records: list[dict]) -> list[tuple]:
    return [(r["wafer_id"], r["part_id"], r.get("supersedes")) for r in records]


def test_without_retests_the_window_is_the_same_list():
    records = [_part("1"), _part("2", x=5)]
    assert latest_results(records) is records


def test_a_part_retest_replaces_every_earlier_record_with_its_ids():
    records = [_part("1", passed=False), _part("2", x=5), _part("1", x=6, passed=False),
               _part("1", passed=True, supersedes="part")]
    assert _ids(latest_results(records)) == [("W", "2", None), ("W", "1", "part")]


def test_a_die_retest_replaces_the_earlier_parts_at_its_position_on_its_wafer_only():
    records = [_part("1"), _part("1", wafer="W2"), _part("2", x=5), _part("9", supersedes="die")]
    assert _ids(latest_results(records)) == [("W2", "1", None), ("W", "2", None), ("W", "9", "die")]


def test_a_retest_of_a_retest_leaves_the_last():
    records = [_part("1"), _part("7", supersedes="die"), _part("8", supersedes="die")]
    assert _ids(latest_results(records)) == [("W", "8", "die")]


def test_a_die_retest_without_a_position_and_a_first_test_supersede_nothing():
    records = [_part("1", x=None), _part("2", x=None, supersedes="die"), _part("3", supersedes="part")]
    assert latest_results(records) == records
