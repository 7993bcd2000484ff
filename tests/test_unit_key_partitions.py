"""The vectorized default partitioner against kafka-python's own murmur2."""

import numpy as np
from kafka.partitioner.default import murmur2 as kafka_murmur2

from stream_ct.key_partitions import default_partitions, murmur2


def test_murmur2_equals_kafka_python_on_keys_of_every_length_and_byte():
    rng = np.random.default_rng(0)
    keys = [bytes(rng.integers(0, 256, size=n, dtype=np.uint8)) for n in rng.integers(0, 41, size=3000)]
    keys += [b"", b"LOT00001/W01/17", "lot/wafer/é".encode()]
    assert murmur2(keys).tolist() == [kafka_murmur2(k) for k in keys]


def test_partitions_equal_the_default_partitioner():
    keys = [f"LOT{lot:05d}/W{w:02d}/{p}".encode() for lot in range(3) for w in range(25) for p in range(0, 400, 7)]
    for n in (1, 2, 3, 6, 12):
        assert default_partitions(keys, n).tolist() == [(kafka_murmur2(k) & 0x7FFFFFFF) % n for k in keys]
