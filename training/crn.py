"""Common random numbers: every random draw of a simulated user is a pure function of (seed, week, stream).

A counter-based generator (the splitmix64 finaliser over a key built from the user's seed, the week and
the draw's stream) gives each user independent, reproducible uniforms and normals, computed for a whole
batch of users at once. Nothing depends on the actions taken or on how many users share a batch, so two
policies run on the same seeds see the same luck, and a user reset inside a vector env costs no loop.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
TRAIT_WEEK = -1  # the week index of draws that fix a user's latent traits


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(seeds: np.ndarray, week: np.ndarray | int, stream: int, k: int) -> np.ndarray:
    """(n, k) uniforms in (0, 1) of the users' `seeds` at `week` for draw `stream`."""
    with np.errstate(over="ignore"):
        s = np.asarray(seeds).astype(np.uint64)
        w = np.broadcast_to(np.asarray(week, dtype=np.int64), s.shape).astype(np.uint64)
        key = _mix(s * _GOLDEN + _mix(w * np.uint64(0x2545F4914F6CDD1D) + np.uint64(stream * 1_000_003)))
        j = np.arange(1, k + 1, dtype=np.uint64)
        bits = _mix(key[:, None] + j[None, :] * _GOLDEN)
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def normals(seeds: np.ndarray, week: np.ndarray | int, stream: int, k: int) -> np.ndarray:
    """(n, k) standard normals (Box-Muller over `uniforms`)."""
    u = uniforms(seeds, week, stream, 2 * k)
    return np.sqrt(-2.0 * np.log(u[:, :k])) * np.cos(2.0 * np.pi * u[:, k:])
