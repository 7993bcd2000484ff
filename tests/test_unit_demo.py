"""``stream-ct demo``'s handling of its output folder, without a broker."""

from __future__ import annotations

import pytest

from stream_ct import demo


def test_demo_refuses_to_delete_a_folder_it_did_not_write(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "LocalBroker", lambda **kw: pytest.fail("started before checking --out"))
    (tmp_path / "notes.txt").write_text("a week of lot notes")
    with pytest.raises(ValueError, match="not a stream-ct demo folder"):
        demo.run_demo(tmp_path, 100, 50, 1.5, 2000, 7, 1)
    assert (tmp_path / "notes.txt").read_text() == "a week of lot notes"


def test_an_earlier_demo_folder_is_cleared(tmp_path):
    (tmp_path / "broker").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    demo.clear_out(tmp_path)
    assert tmp_path.is_dir() and not any(tmp_path.iterdir())
    demo.clear_out(tmp_path / "new")  # a new folder, and an empty one, are fine too
    demo.clear_out(tmp_path / "new")
