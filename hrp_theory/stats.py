"""Monte Carlo statistics on the host: means with standard errors and confidence intervals.

**The divergence rule** (every command): a seed whose loss becomes non-finite, or exceeds
``DIVERGENCE_FACTOR`` = 10³ times its starting loss, at any recorded step, has diverged. Its
outcomes are counted as diverged and left out of every statistic (they become NaN, and
non-finite values are counted, never averaged in).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats as _st

#: A loss above this multiple of the seed's starting loss counts as diverged (see module doc).
DIVERGENCE_FACTOR = 1e3
DIVERGENCE_RULE = (
    f"a seed whose loss becomes non-finite or exceeds {DIVERGENCE_FACTOR:g} × its "
    "starting loss at any recorded step is counted as diverged and left out of "
    "the statistics"
)


def diverged(losses, start=None) -> np.ndarray:
    """``(seeds,)`` booleans: the divergence rule applied to recorded losses.

    Args:
      losses: ``(seeds,)`` or ``(seeds, T)`` losses along each run (any recorded steps).
      start: ``(seeds,)`` starting losses (default: the first column of ``losses``).
    """
    x = np.asarray(losses, np.float64)
    x = x.reshape(x.shape[0], -1)
    s = x[:, 0] if start is None else np.asarray(start, np.float64).reshape(-1)
    bad = ~np.all(np.isfinite(x), axis=1) | ~np.isfinite(s)
    limit = DIVERGENCE_FACTOR * np.maximum(np.abs(s), np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore"):
        bad |= np.any(x > limit[:, None], axis=1)
    return bad


def resolution(dtype: str, scale: float) -> float:
    """Smallest difference of losses of size ``scale`` that ``dtype`` ("float32"/"float64")
    resolves: ``10·eps·scale``. Excess losses below it are rounding noise."""
    return 10 * float(np.finfo(np.float64 if dtype == "float64" else np.float32).eps) * scale


def summarize(x, level: float = 0.95) -> dict:
    """``{mean, se, median, q05, q95, ci95, n, n_nonfinite}`` of the finite entries of ``x``.

    ``ci95`` is the Student-t interval ``mean ± t_{n−1}·SE`` (a normal one for large n).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    n = finite.size
    out = {"n": int(n), "n_nonfinite": int(x.size - n)}
    if n == 0:
        nan = float("nan")
        return out | {
            "mean": nan,
            "se": nan,
            "median": nan,
            "q05": nan,
            "q95": nan,
            "ci95": [nan, nan],
        }
    mean = float(finite.mean())
    se = float(finite.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * se if n > 1 else float("nan")
    return out | {
        "mean": mean,
        "se": se,
        "median": float(np.median(finite)),
        "q05": float(np.quantile(finite, 0.05)),
        "q95": float(np.quantile(finite, 0.95)),
        "ci95": [mean - half, mean + half],
    }


class Moments(NamedTuple):
    """Streaming statistics of a metric, elementwise over its non-seed axes: finite count, mean,
    sum of squared deviations (``m2``), non-finite count. Merge chunks with ``merge_moments``
    (Chan et al.'s pairwise update), so memory does not grow with the number of seeds."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    n_nonfinite: np.ndarray


def moments_of(x) -> Moments:
    """Moments of a chunk ``x`` (seeds first); non-finite entries are counted, not averaged."""
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    n = ok.sum(axis=0)
    mean = np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1)
    m2 = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=0)
    return Moments(n, mean, m2, (~ok).sum(axis=0))


def merge_moments(a: Moments, b: Moments) -> Moments:
    n = a.n + b.n
    delta = b.mean - a.mean
    safe = np.maximum(n, 1)
    return Moments(
        n,
        a.mean + delta * b.n / safe,
        a.m2 + b.m2 + delta**2 * a.n * b.n / safe,
        a.n_nonfinite + b.n_nonfinite,
    )


def summarize_moments(mo: Moments, level: float = 0.95) -> dict:
    """``summarize``'s fields from streamed moments of a scalar metric (no median or quantiles:
    they need the samples; they are None)."""
    n, mean = int(mo.n), float(mo.mean)
    out = {"n": n, "n_nonfinite": int(mo.n_nonfinite), "median": None, "q05": None, "q95": None}
    if n == 0:
        nan = float("nan")
        return out | {"mean": nan, "se": nan, "ci95": [nan, nan]}
    se = float(np.sqrt(mo.m2 / (n - 1) / n)) if n > 1 else float("nan")
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * se if n > 1 else float("nan")
    return out | {"mean": mean, "se": se, "ci95": [mean - half, mean + half]}


def band_of_moments(mo: Moments, level: float = 0.95) -> dict:
    """``curve_band``'s fields from streamed moments of a curve (median None)."""
    n = np.maximum(mo.n, 2)
    se = np.sqrt(mo.m2 / (n - 1) / n)
    t = _st.t.ppf(0.5 + level / 2, n - 1)
    mean = np.where(mo.n > 0, mo.mean, np.nan)
    return {
        "mean": mean.tolist(),
        "lo": (mean - t * se).tolist(),
        "hi": (mean + t * se).tolist(),
        "median": None,
        "n": int(mo.n.min()),
    }


def paired_difference(a, b) -> dict:
    """Statistics of ``a − b`` over seeds where both are finite (paired: same target and data)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    return summarize((a - b)[keep]) | {"n_dropped": int((~keep).sum())}


def curve_band(curves, level: float = 0.95) -> dict:
    """Mean, CI band and median of curves ``(seeds, T)`` over the seeds whose curve is finite."""
    curves = np.asarray(curves, np.float64)
    ok = np.all(np.isfinite(curves), axis=1)
    c = curves[ok]
    n = c.shape[0]
    if n == 0:
        nan = [float("nan")] * curves.shape[1]
        return {"mean": nan, "lo": nan, "hi": nan, "median": nan, "n": 0}
    mean = c.mean(axis=0)
    se = c.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    t = _st.t.ppf(0.5 + level / 2, n - 1) if n > 1 else np.nan
    return {
        "mean": mean.tolist(),
        "lo": (mean - t * se).tolist(),
        "hi": (mean + t * se).tolist(),
        "median": np.median(c, axis=0).tolist(),
        "n": int(n),
    }


def intervals_overlap(a: dict, b: dict) -> bool:
    """Whether two summaries' 95 % confidence intervals overlap."""
    return not (a["ci95"][1] < b["ci95"][0] or b["ci95"][1] < a["ci95"][0])
