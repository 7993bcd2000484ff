"""Kafka's default partition of keyed records, for a whole batch of keys at once.

The Java client and kafka-python put a keyed record in partition
``(murmur2(key) & 0x7fffffff) % partitions``. kafka-python computes murmur2 in pure Python,
about 11 us per record — a third of its ``send``; passing ``partition=`` from this
vectorized murmur2 gives every record the partition it would have had.

>>> from kafka.partitioner.default import murmur2
>>> keys = [b"LOT00001/W01/17", b"", b"a", b"\\xff\\xfe\\x00"]
>>> default_partitions(keys, 6).tolist() == [(murmur2(k) & 0x7fffffff) % 6 for k in keys]
True
"""

from __future__ import annotations

import numpy as np

_SEED, _M, _R = 0x9747B28C, np.uint32(0x5BD1E995), np.uint32(24)


def murmur2(keys: list[bytes]) -> np.ndarray:
    """MurmurHash2 (Kafka's variant, seed 0x9747b28c) of every key, as uint32."""
    out = np.empty(len(keys), dtype=np.uint32)
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        data = np.frombuffer(b"".join(keys[i] for i in rows.tolist()), dtype=np.uint8).reshape(len(rows), length)
        out[rows] = _murmur2_same_length(data)
    return out


def _murmur2_same_length(data: np.ndarray) -> np.ndarray:
    """murmur2 of each row of ``data`` (n x length, uint8)."""
    n, length = data.shape
    with np.errstate(over="ignore"):
        h = np.full(n, (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        whole = length // 4 * 4
        words = np.ascontiguousarray(data[:, :whole]).view("<u4")  # little-endian 4-byte blocks
        for i in range(words.shape[1]):
            k = words[:, i] * _M
            k ^= k >> _R
            k *= _M
            h *= _M
            h ^= k
        tail = length - whole
        if tail >= 3:
            h ^= data[:, whole + 2].astype(np.uint32) << np.uint32(16)
        if tail >= 2:
            h ^= data[:, whole + 1].astype(np.uint32) << np.uint32(8)
        if tail >= 1:
            h ^= data[:, whole].astype(np.uint32)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h


def default_partitions(keys: list[bytes], partitions: int) -> np.ndarray:
    """The partition index Kafka's default partitioner gives each key (``partitions`` > 0)."""
    return (murmur2(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)
