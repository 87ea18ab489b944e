"""Stable argsort of float64 values by an LSD radix sort of their bit patterns.

Sorting the stop times (once per Cox fit) and the risk scores (once per C
index) is a visible part of a fit at n = 1e6; a radix sort of the IEEE bit
patterns is 2-3x faster than NumPy's stable sort and gives exactly the same
order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["sortable_keys", "stable_argsort"]


@njit(cache=True)
def _radix_argsort(keys, idx, tmp_idx, tmp):
    """Stable argsort (n,) int64 of unsigned 64-bit keys: LSD radix sort, 11-bit digits.

    ``keys`` is overwritten; ``idx``, ``tmp_idx`` (int64) and ``tmp``
    (uint64) are (n,) work arrays, allocated by NumPy (whose large
    allocations get transparent huge pages, so fewer page faults).

    All six digit histograms come from one read of the keys; a digit on which
    every key agrees (e.g. the low mantissa bits of whole-day times) is
    skipped. Being a radix sort it is stable, and O(n) per digit.
    """
    n = keys.shape[0]
    bits = 11
    n_dig = 6
    size = 1 << bits
    mask = np.uint64(size - 1)
    hist = np.zeros((n_dig, size), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for d in range(n_dig):
            hist[d, np.int64((k >> np.uint64(d * bits)) & mask)] += 1
    for i in range(n):
        idx[i] = i
    cur = keys
    pos = np.empty(size, dtype=np.int64)
    for d in range(n_dig):
        h = hist[d]
        trivial = False
        for b in range(size):
            if h[b] == n:
                trivial = True
                break
        if trivial:
            continue
        acc = 0
        for b in range(size):
            pos[b] = acc
            acc += h[b]
        shift = np.uint64(d * bits)
        for i in range(n):
            k = cur[i]
            bucket = np.int64((k >> shift) & mask)
            q = pos[bucket]
            tmp[q] = k
            tmp_idx[q] = idx[i]
            pos[bucket] = q + 1
        cur, tmp = tmp, cur
        idx, tmp_idx = tmp_idx, idx
    return idx


@njit(cache=True)
def _flip_to_sortable(bits):
    """In place: IEEE bit patterns (uint64) to keys that order as the floats do."""
    sign = np.uint64(1) << np.uint64(63)
    for i in range(bits.shape[0]):
        b = bits[i]
        bits[i] = ~b if b & sign else b | sign


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit keys (n,) that order as the finite float64 ``values`` do (a new array).

    Non-negative doubles order as their bit patterns do, so their sign bit is
    set; negative ones order in reverse, so all their bits are flipped.
    ``+ 0.0`` first turns -0.0 into 0.0, so the two zeros share a key.
    """
    keys = (np.ascontiguousarray(values, dtype=np.float64) + 0.0).view(np.uint64)
    _flip_to_sortable(keys)
    return keys


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` as int64, 2-3x faster, for float64 values without NaN.

    With NaN present it falls back to NumPy (which sorts NaN last).
    """
    values = np.ascontiguousarray(values, dtype=float)
    n = values.shape[0]
    if n == 0 or np.isnan(values).any():
        return np.argsort(values, kind="stable").astype(np.int64, copy=False)
    if values.min() >= 0:
        keys = (values + 0.0).view(np.uint64)  # a fresh copy: the sort overwrites it
    else:
        keys = sortable_keys(values)
    return _radix_argsort(keys, np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint64))
