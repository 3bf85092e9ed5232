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


# --- the end-to-end study's statistics: paired bootstrap, Holm, permutation correlations ---------

#: Fewer paired seeds than this and a table prints "n too small" instead of an interval, a
#: p-value or a correlation (an interval from 2–4 seeds is mostly the t quantile).
MIN_SEEDS = 5
BOOTSTRAP_DRAWS = 10_000


def bootstrap_paired(a, b=None, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0, level=0.95) -> dict:
    """The mean over seeds and examples of ``a − b`` (``a`` alone if ``b`` is None), with a
    percentile bootstrap interval that resamples **seeds and examples**, independently, and a
    two-sided bootstrap p-value for "the mean is 0".

    Args:
      a, b: ``(seeds, examples)`` per-example scores (1/0 correct, or losses) of two inits on
        the same seeds (data order, heads, random factors) and the same test examples. A seed
        with any non-finite score in either (a diverged run) is left out of both, and counted.

    Returns ``{mean, ci95, se, p, n, n_examples, n_dropped, draws}``: ``se`` is the bootstrap
    standard deviation, ``p = min(1, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)))`` with the ``(k+1)/(B+1)``
    correction. Resampling both levels puts the test set's sampling error in the interval, not
    only the seeds'.
    """
    a = np.asarray(a, np.float64)
    d = a if b is None else a - np.asarray(b, np.float64)
    keep = np.all(np.isfinite(d), axis=1)
    d = d[keep]
    S, N = d.shape
    out = {"n": int(S), "n_examples": int(N), "n_dropped": int((~keep).sum()), "draws": draws}
    if S == 0:
        nan = float("nan")
        return out | {"mean": nan, "ci95": [nan, nan], "se": nan, "p": None}
    rng = np.random.default_rng(seed)
    stats = np.empty(draws)
    chunk = max(1, min(draws, 2_000_000 // max(N, 1)))
    for lo in range(0, draws, chunk):
        m = min(chunk, draws - lo)
        ex = rng.integers(0, N, size=(m, N))
        # how often each example is drawn, per draw (a bincount: np.add.at is 10× slower)
        flat = (ex + N * np.arange(m)[:, None]).ravel()
        w_e = np.bincount(flat, minlength=m * N).reshape(m, N).astype(np.float64)
        per_seed = w_e @ d.T / N  # (m, S): each seed's mean over the resampled examples
        sd = rng.integers(0, S, size=(m, S))
        stats[lo : lo + m] = np.take_along_axis(per_seed, sd, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    lo_q, hi_q = np.quantile(stats, [tail, 1 - tail])
    below, above = np.sum(stats <= 0), np.sum(stats >= 0)
    p = min(1.0, 2 * (min(below, above) + 1) / (draws + 1))
    return out | {
        "mean": float(d.mean()),
        "ci95": [float(lo_q), float(hi_q)],
        "se": float(stats.std(ddof=1)),
        "p": float(p),
    }


def holm(pvalues) -> list:
    """Holm–Bonferroni adjusted p-values (step-down, kept monotone, capped at 1), in the order
    given; ``None`` entries (no test) stay ``None`` and do not count towards the family."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and np.isfinite(p)]
    m = len(idx)
    out: list = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    return _st.rankdata(x, axis=-1)


def rank_product_counts(a, b) -> np.ndarray:
    """How many of the ``n!`` orderings π give each value of ``Σ_i a_i·b_π(i)``: entry ``s`` of the
    result counts the π with sum ``s``. ``a`` and ``b`` are non-negative integers (twice the
    ranks, so that mid-ranks of ties are integers too). Dynamic programming over the subsets of
    ``b`` already used: ``2ⁿ·n`` vector additions, exact in integers (``n!`` fits an int64 up to
    n = 20; the table has ``2ⁿ × max`` entries, 85 MB at n = 12)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    n = a.size
    top = int(np.sort(a) @ np.sort(b))  # the largest sum (rearrangement inequality)
    counts = np.zeros((1 << n, top + 1), np.int64)
    counts[0, 0] = 1
    for used in range(1 << n):  # every subset of ``used`` is a smaller number: done before it
        k = used.bit_count()  # a_0 … a_{k-1} are paired with the members of ``used``
        row = counts[used]
        if k == n or not row.any():
            continue
        nz = np.flatnonzero(row)
        lo, hi = nz[0], nz[-1] + 1
        for j in range(n):
            if not used >> j & 1:
                w = int(a[k] * b[j])
                counts[used | 1 << j, lo + w : hi + w] += row[lo:hi]
    return counts[-1]


#: Up to this many pairs, ``spearman_permutation``'s p is exact (``rank_product_counts``).
EXACT_UP_TO = 12


def spearman_permutation(
    x, y, *, exact_up_to: int = EXACT_UP_TO, draws: int = 200_000, seed: int = 0
):
    """Spearman's ρ of the finite pairs of ``x`` and ``y`` with a two-sided permutation p-value:
    exact over all ``n!`` orderings for ``n ≤ exact_up_to`` (``rank_product_counts``: the share
    of orderings whose ``|ρ|`` is at least the observed one, ties of ρ included), else from
    ``draws`` random permutations with the ``(k+1)/(B+1)`` correction (``exact`` says which).
    Fewer than ``MIN_SEEDS`` pairs: ρ and p are None.

    Returns ``{rho, p, n, exact, draws}``."""
    import math

    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < MIN_SEEDS:
        return {"rho": None, "p": None, "n": n, "exact": None, "draws": 0}
    rx, ry = _ranks(x), _ranks(y)
    cx, cy = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((cx**2).sum() * (cy**2).sum())
    if denom == 0:
        return {"rho": None, "p": None, "n": n, "exact": None, "draws": 0}
    rho = float(cx @ cy / denom)
    exact = n <= exact_up_to
    if exact:
        # ρ is an increasing function of S = Σ a_i·b_π(i) with a, b twice the ranks:
        # n·S − Σa·Σb is n·4·Σ cx·cy_π, an integer, so |ρ_π| ≥ |ρ| is compared exactly
        a, b = np.rint(2 * rx).astype(np.int64), np.rint(2 * ry).astype(np.int64)
        counts = rank_product_counts(a, b)
        centred = n * np.arange(counts.size) - int(a.sum()) * int(b.sum())
        observed = abs(n * int(a @ b) - int(a.sum()) * int(b.sum()))
        p = int(counts[np.abs(centred) >= observed].sum()) / math.factorial(n)
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((draws, n)), axis=1)
        null = (cy[perms] @ cx) / denom
        hits = np.sum(np.abs(null) >= abs(rho) - 1e-12)
        p = (hits + 1) / (draws + 1)
    return {
        "rho": rho,
        "p": float(p),
        "n": n,
        "exact": exact,
        "draws": math.factorial(n) if exact else draws,
    }
