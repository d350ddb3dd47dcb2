"""Latency histograms on fixed log-spaced bins, stored as small blobs in the roll-up tables.

Bin 0 holds latencies under 1 ms; bin k >= 1 holds [BASE**(k-1), BASE**k) ms. With BASE 1.2 a
percentile read from the bins is at most 20% above the true value, and 80 bins reach past
two hours, beyond any request timeout. A blob is the bins' counts as little-endian uint32;
SQLite merges them with the ``hist_add`` function and the ``hist_sum`` aggregate registered on
every connection, so roll-ups are updated and read in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

BASE = 1.2
BINS = 80
_DTYPE = np.dtype("<u4")


def bin_of(ms: float) -> int:
    if ms < 1:
        return 0
    return min(BINS - 1, 1 + int(math.log(ms, BASE)))


def upper_ms(k: int) -> float:
    return BASE ** k if k else 1.0


def encode(latencies: Iterable[float]) -> bytes:
    counts = np.zeros(BINS, dtype=_DTYPE)
    for ms in latencies:
        counts[bin_of(ms)] += 1
    return counts.tobytes()


def decode(blob: bytes | None) -> np.ndarray:
    if not blob:
        return np.zeros(BINS, dtype=_DTYPE)
    return np.frombuffer(blob, dtype=_DTYPE)


def hist_add(a: bytes | None, b: bytes | None) -> bytes:
    return (decode(a) + decode(b)).astype(_DTYPE).tobytes()


class HistSum:
    """SQLite aggregate: the bin-wise sum of the blobs in a group."""

    def __init__(self) -> None:
        self.total = np.zeros(BINS, dtype=np.uint64)

    def step(self, blob: bytes | None) -> None:
        if blob:
            self.total += decode(blob)

    def finalize(self) -> bytes:
        return self.total.astype(_DTYPE).tobytes()


def percentile(blob: bytes | np.ndarray | None, q: float) -> float | None:
    """The upper bound of the bin holding the q-quantile, or None without data."""
    counts = blob if isinstance(blob, np.ndarray) else decode(blob)
    total = int(counts.sum())
    if not total:
        return None
    k = int(np.searchsorted(np.cumsum(counts), q * total))
    return upper_ms(min(k, BINS - 1))


def percentiles(blobs: list[bytes | None], q: float) -> list[float | None]:
    """``percentile`` for many histograms at once (one numpy pass: charts have thousands)."""
    if not blobs:
        return []
    counts = np.vstack([decode(blob) for blob in blobs]).astype(np.int64)
    cum = np.cumsum(counts, axis=1)
    totals = cum[:, -1]
    k = np.argmax(cum >= (q * totals)[:, None], axis=1)
    bounds = np.where(k == 0, 1.0, BASE ** k.astype(float))
    return [float(b) if t else None for b, t in zip(bounds, totals)]
