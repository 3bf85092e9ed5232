"""The end-to-end study's statistics (``hrp_theory.stats``) against references computed another
way: Holm's adjustment by hand, the exact permutation null by enumerating every ordering, and the
two-level bootstrap's variance in closed form."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st

from hrp_theory import stats


def test_holm_matches_the_step_down_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept monotone: 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a missing test is not in the family, and nothing exceeds 1
    assert stats.holm([0.3, None, 0.6]) == pytest.approx([0.6, None, 0.6])
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]


def _enumerated_p(x, y):
    """The two-sided permutation p of Spearman's ρ over all ``n!`` orderings, one by one."""
    rx, ry = st.rankdata(x), st.rankdata(y)
    cx, cy = rx - rx.mean(), ry - ry.mean()
    observed = abs(cx @ cy)
    null = [abs(cx @ cy[list(p)]) for p in itertools.permutations(range(len(x)))]
    return np.mean(np.asarray(null) >= observed - 1e-9)


@pytest.mark.parametrize("n", [5, 6, 7])
def test_exact_spearman_p_is_the_enumerated_one_with_and_without_ties(n):
    rng = np.random.default_rng(n)
    for x, y in [
        (rng.normal(size=n), rng.normal(size=n)),
        (rng.integers(0, 3, n).astype(float), rng.normal(size=n)),  # ties in x
        (rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)),  # both
        (np.arange(n, dtype=float), np.arange(n, dtype=float) ** 3),  # perfectly monotone
    ]:
        got = stats.spearman_permutation(x, y)
        assert got["exact"] and got["draws"] == math.factorial(n)
        assert got["rho"] == pytest.approx(st.spearmanr(x, y).statistic)
        assert got["p"] == pytest.approx(_enumerated_p(x, y), abs=1e-12)


def test_rank_product_counts_cover_every_ordering_once():
    a, b = np.array([2, 4, 4, 8, 10, 12]), np.array([1, 3, 5, 7, 9, 11]) * 2
    counts = stats.rank_product_counts(a, b)
    assert counts.sum() == math.factorial(6)
    sums = [a @ b[list(p)] for p in itertools.permutations(range(6))]
    assert np.array_equal(counts, np.bincount(sums, minlength=counts.size))


def test_exact_p_at_eleven_agrees_with_random_permutations():
    """n = 11 (the study's inits): the exact p (11! orderings) and 200,000 random ones agree
    within 4 standard errors of the random estimate."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=11)
    y = x + 2 * rng.normal(size=11)
    exact = stats.spearman_permutation(x, y)
    drawn = stats.spearman_permutation(x, y, exact_up_to=0)
    assert exact["exact"] and not drawn["exact"] and exact["rho"] == drawn["rho"]
    se = math.sqrt(exact["p"] * (1 - exact["p"]) / drawn["draws"])
    assert abs(drawn["p"] - exact["p"]) < 4 * se
    # a perfect order is the most extreme of all: the identity and its reverse
    top = stats.spearman_permutation(np.arange(11.0), np.arange(11.0) ** 2)
    assert top["p"] == pytest.approx(2 / math.factorial(11), rel=1e-12)


def test_too_few_pairs_or_a_constant_give_no_correlation():
    assert stats.spearman_permutation([1, 2, 3, 4], [1, 2, 3, 4])["rho"] is None
    assert stats.spearman_permutation(np.ones(6), np.arange(6.0))["p"] is None
    # non-finite pairs are left out before counting
    got = stats.spearman_permutation([1, 2, 3, 4, 5, np.nan], [2, 1, 4, 3, 5, 6])
    assert got["n"] == 5


def _two_level_bootstrap_variance(d):
    """Var of the mean of ``d`` (S, N) when seeds and examples are resampled independently with
    replacement: with u, v the draw counts, E[uuᵀ] = C_S + J_S with J all ones and C = I − J/n, so
    Var(uᵀdv) = tr(dᵀC_S d C_N) + tr(dᵀC_S d J_N) + tr(dᵀJ_S d C_N), over (S·N)²."""
    S, N = d.shape
    cs, cn = np.eye(S) - 1 / S, np.eye(N) - 1 / N
    js, jn = np.ones((S, S)), np.ones((N, N))
    var = np.trace(d.T @ cs @ d @ cn) + np.trace(d.T @ cs @ d @ jn) + np.trace(d.T @ js @ d @ cn)
    return var / (S * N) ** 2


def test_paired_bootstrap_spread_is_the_two_level_resampling_variance():
    """The bootstrap SE resamples seeds *and* examples: its variance matches the closed form
    within 4 standard errors of a variance estimated from B draws (relative SE √(2/B))."""
    rng = np.random.default_rng(3)
    S, N, draws = 12, 80, 10_000
    a = (rng.random((S, N)) < 0.75 + 0.05 * rng.normal(size=(S, 1))).astype(float)
    b = (rng.random((S, N)) < 0.70).astype(float)
    got = stats.bootstrap_paired(a, b, draws=draws)
    want = _two_level_bootstrap_variance(a - b)
    assert got["mean"] == pytest.approx((a - b).mean())
    assert abs(got["se"] ** 2 / want - 1) < 4 * math.sqrt(2 / draws)
    # resampling the seeds alone would leave out the examples' part: it is not what is measured
    seeds_only = np.var((a - b).mean(1), ddof=0) / S
    assert got["se"] ** 2 > 1.2 * seeds_only


def test_paired_bootstrap_p_and_dropped_seeds():
    rng = np.random.default_rng(4)
    d = rng.normal(size=(10, 50))
    sym = np.concatenate([d, -d])  # mean exactly 0: the interval straddles it, p is large
    got = stats.bootstrap_paired(sym, draws=2_000)
    assert got["ci95"][0] < 0 < got["ci95"][1] and got["p"] > 0.5
    shifted = stats.bootstrap_paired(d + 5, draws=2_000)  # far from 0: the smallest p there is
    assert shifted["p"] == pytest.approx(2 / 2_001)
    d[3, 7] = np.nan  # a diverged seed is left out of the pair and counted
    got = stats.bootstrap_paired(d, np.zeros_like(d), draws=500)
    assert got["n"] == 9 and got["n_dropped"] == 1 and np.isfinite(got["mean"])


def test_sharpness_against_rate_pairs_two_studies_by_init():
    """λ_max at init comes from the study with Lanczos, the best rate from the grid; inits are
    matched by name, and a missing λ or rate gives no correlation."""
    from hrp_theory.finetune.summary import lam_max_vs_best_lr

    def study(lams):
        return {
            "forms": {
                "classic": {
                    "inits": {
                        n: {"common_lr": {"curvature": {"adapters+head": {"lam_max_mean": v}}}}
                        for n, v in lams.items()
                    }
                }
            }
        }

    def grid(rates):
        return {"forms": {"classic": {"inits": {n: {"best_lr": r} for n, r in rates.items()}}}}

    lams = {"a": 2.0, "b": 4.0, "c": 8.0, "d": 16.0, "e": 32.0, "f": 1.0}
    rates = {"e": 1e-4, "d": 1e-4, "c": 5e-4, "b": 5e-4, "a": 1.5e-3}  # no "f": left out
    got = lam_max_vs_best_lr(study(lams), grid(rates))
    assert got is not None and got["inits"] == ["e", "d", "c", "b", "a"] and got["exact"]
    want = st.spearmanr([32, 16, 8, 4, 2], [1e-4, 1e-4, 5e-4, 5e-4, 1.5e-3]).statistic
    assert got["rho"] == pytest.approx(want) and got["rho"] < -0.9
    lams["c"] = None  # a study run without Lanczos
    assert lam_max_vs_best_lr(study(lams), grid(rates)) is None
