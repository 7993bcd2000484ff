"""``stdf publish`` on the real broker: one acknowledged message per part, event-time stamps,
and an exact count when a bad file stops it."""

from __future__ import annotations

import gzip

import orjson
import pytest

from stdf_support import STDF_DIR, main, needs_data
from stream_ct.kafka_io import ensure_topics
from stream_ct.record import part_key, validate_record
from stream_ct.replay import record
from stream_ct.stdf import StdfError
from stream_ct.stdf.publish import publish

pytestmark = pytest.mark.integration




@needs_data
def test_publish_sends_every_part_keyed_and_stamped(kafka_bootstrap, topic):
    ensure_topics({topic: {"partitions": 3}}, kafka_bootstrap)
    files = [STDF_DIR / "lot2.stdf.gz", STDF_DIR / "makechip_d10_1.std"]
    result = publish(files, topic, kafka_bootstrap, progress=False)
    assert [(f.file, f.parts) for f in result.files] == [("lot2.stdf.gz", 784), ("makechip_d10_1.std", 1)]
    assert result.error is None
    back = list(record(topic, kafka_bootstrap))
    assert len(back) == 785
    by_file = {}
    for message in back:
        rec = orjson.loads(message.value)
        assert validate_record(rec) is None
        assert message.key == part_key(rec).encode()
        assert message.timestamp == round(rec["ts"] * 1000)
        assert message.headers[0] == ("source", b"stdf")
        by_file[message.headers[1][1]] = by_file.get(message.headers[1][1], 0) + 1
    assert by_file == {b"lot2.stdf.gz": 784, b"makechip_d10_1.std": 1}


@needs_data
def test_publish_stops_at_a_bad_file_and_says_how_many_went_out(kafka_bootstrap, topic, tmp_path, capsys):
    ensure_topics({topic: {"partitions": 1}}, kafka_bootstrap)
    raw = gzip.decompress((STDF_DIR / "lot2.stdf.gz").read_bytes())
    (tmp_path / "cut.stdf.gz").write_bytes(gzip.compress(raw[:1_000_000]))
    with pytest.raises(StdfError) as info:
        publish([STDF_DIR / "makechip_d10_1.std", tmp_path / "cut.stdf.gz"], topic, kafka_bootstrap, progress=False)
    sent = info.value.result.parts
    assert [(f.file, f.parts) for f in info.value.result.files][0] == ("makechip_d10_1.std", 1)
    assert str(info.value).endswith(f": {sent} parts were published before the error")
    assert len(list(record(topic, kafka_bootstrap))) == sent > 1
    code = main(["stdf", "publish", str(tmp_path / "cut.stdf.gz"), "--topic", topic,
                 "--bootstrap-servers", kafka_bootstrap, "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: cut.stdf.gz: truncated record at byte ")
