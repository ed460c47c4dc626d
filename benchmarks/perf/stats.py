"""Summaries of repeated measurements: median and spread, latency histograms.

The guests report raw batches (call classes) or a log-linear histogram
(scale); everything statistical is done here, in one place, so that every
table uses the same definitions:

* ``median`` and ``p10``/``p90`` use linear interpolation between order
  statistics (numpy's default, "type 7"), so they are defined for any
  number of samples >= 1;
* a ratio is taken between medians (never between means).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

# Must match statloop.c: values below 16 have their own bucket; above, 16
# buckets per power of two.
HIST_SUB_BITS = 4
HIST_SUB = 1 << HIST_SUB_BITS


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict:
    """median, p10, p90, min, max and the count of ``values``."""
    return {
        "median": percentile(values, 50),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def hist_bucket_low(index: int) -> int:
    """The lowest value (ns) that falls into histogram bucket ``index``."""
    if index < 0:
        raise ValueError("negative histogram bucket")
    if index < HIST_SUB:
        return index
    octave, sub = divmod(index, HIST_SUB)
    exponent = octave + HIST_SUB_BITS - 1
    return (HIST_SUB + sub) << (exponent - HIST_SUB_BITS)


def hist_bucket_mid(index: int) -> float:
    """A representative value for bucket ``index`` (the middle of its range)."""
    lo = hist_bucket_low(index)
    hi = hist_bucket_low(index + 1)
    return lo if hi - lo <= 1 else (lo + hi) / 2.0


def parse_hist(text: str) -> dict[int, int]:
    """``"IDX:COUNT,..."`` -> {index: count}; ValueError naming a bad item."""
    out: dict[int, int] = {}
    for item in filter(None, text.split(",")):
        idx, sep, count = item.partition(":")
        if not sep or not idx.isdigit() or not count.isdigit():
            raise ValueError(f"bad histogram item {item!r}")
        out[int(idx)] = out.get(int(idx), 0) + int(count)
    return out


def merge_hists(hists: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for h in hists:
        for idx, count in h.items():
            merged[idx] = merged.get(idx, 0) + count
    return merged


def hist_percentile(hist: Mapping[int, int], q: float) -> float:
    """The q-th percentile (0..100) of the values a histogram counts."""
    total = sum(hist.values())
    if total == 0:
        raise ValueError("percentile of an empty histogram")
    rank = max(1, math.ceil(total * q / 100.0))
    seen = 0
    for idx in sorted(hist):
        seen += hist[idx]
        if seen >= rank:
            return hist_bucket_mid(idx)
    return hist_bucket_mid(max(hist))


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return value / base
