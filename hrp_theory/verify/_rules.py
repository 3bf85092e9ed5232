"""The verdict rules of ``hrp-sim verify``, the row they produce, and the shared run context.

Rules (docs/theory.md §8; the SE multiples are settable):

* ``expectation`` — ``|mean − prediction| ≤ 4·SE`` (SE from the same sample; when the prediction
  is itself a Monte Carlo estimate its SE is added in quadrature);
* ``upper bound`` / ``lower bound`` — ``mean ≤ bound + 3·SE`` / ``mean ≥ bound − 3·SE``;
* ``exceeds`` — ``mean − level > 4·SE`` (a strict, many-SE gap, e.g. "worse than random");
* ``pathwise`` — the largest error over seeds and times ``≤`` a stated tolerance (1e-8 relative
  by default, float64);
* ``relative band`` — ``|measured − prediction| ≤ rel·|prediction|`` (the ±25 % slope and 1 %
  half-time rules).

Seeds that diverge (``stats.diverged``) are left out of every statistic and counted in the row's
``diverged``; a row with a diverged seed fails, since the theory speaks of every seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import devices as dev
from ..dynamics import TrainSpec
from ..experiment import ExperimentConfig, HrpSpec, run_experiment
from ..factors import LoraSpec
from ..problems import Basis, ProblemSpec
from ..seeds import map_seeds
from ..spectra import spectrum_values
from ..validation import one_of, positive_number
from ..validation import seed as check_seed

M_, N_, R_ = 48, 64, 4  # the canonical sizes of docs/theory.md §2
#: ``Settings.basis``: the fastest exact basis for each check, or dense problems everywhere.
BASES = ("auto", "dense")
#: The SE multiples a rule may use: below 1 true statements fail by chance, above 10 any
#: estimate passes. Pathwise identities hold to float64 rounding.
MIN_N_SE, MAX_N_SE = 1.0, 10.0
MAX_PATHWISE_TOL = 1e-3
GAP = "gap:4:0.1"  # docs/theory.md §5.4's spectrum: σ_r − σ_{r+1} = 0.1
SPECTRA = {"power": "power:1", "exp": "exp:3", "sqrt": "power:0.5", "spike8": "rank:8"}

#: What a row's ``prediction`` holds.
KINDS = ("expectation", "upper bound", "lower bound", "level", "zero", "band")


@dataclasses.dataclass
class Row:
    """One verdict of the catalogue (the JSON contract of ``hrp-sim verify``).

    ``prediction`` holds what ``kind`` says: an expected value, an upper or lower bound, a level
    the mean must exceed, ``0`` for a pathwise error or a count, or the centre of a relative
    band."""

    name: str
    setting: str
    prediction: float
    measured: float
    se: float | None
    seeds: int
    tolerance: float
    passed: bool
    rule: str
    kind: str = "expectation"
    diverged: int = 0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the catalogue runs. ``n_se_expect``/``n_se_bound``: SE multiples of the expectation and
    bound rules; ``pathwise_tol``: relative tolerance of pathwise identities (float64);
    ``basis``: ``auto`` runs each check's whitened problems in the fastest basis that is exact
    for it (spectral or reduced: docs/theory.md §2.1), ``dense`` runs every check on dense
    randomly rotated problems (the library's general path, several times slower)."""

    quick: bool = False
    seed: int = 0
    n_se_expect: float = 4.0
    n_se_bound: float = 3.0
    pathwise_tol: float = 1e-8
    progress: bool = True
    basis: str = "auto"

    def __post_init__(self):
        one_of(self.basis, "basis", BASES)
        for f in ("n_se_expect", "n_se_bound", "pathwise_tol"):
            positive_number(getattr(self, f), f)
        for f in ("n_se_expect", "n_se_bound"):
            if not MIN_N_SE <= getattr(self, f) <= MAX_N_SE:
                raise ValueError(
                    f"{f}: {getattr(self, f):g} SE is outside [{MIN_N_SE:g}, {MAX_N_SE:g}]: below, "
                    "true statements fail by chance; above, any estimate passes"
                )
        if self.pathwise_tol > MAX_PATHWISE_TOL:
            raise ValueError(
                f"pathwise_tol: {self.pathwise_tol:g} is above {MAX_PATHWISE_TOL:g}; a pathwise "
                "identity holds to rounding in float64, so a looser tolerance hides a wrong one"
            )
        if self.pathwise_tol < 1e3 * np.finfo(np.float64).eps:
            raise ValueError(
                f"pathwise_tol: {self.pathwise_tol:g} is below what float64 can "
                f"resolve after a few thousand operations; use >= 1e-13"
            )
        check_seed(self.seed)

    def seeds(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def _stat(x) -> tuple[float, float, int, int]:
    """Mean, SE and count of the finite samples, and the count of non-finite (diverged) ones."""
    x = np.asarray(x, np.float64).ravel()
    ok = np.isfinite(x)
    y, bad = x[ok], int((~ok).sum())
    if y.size < 2:
        return float("nan"), float("nan"), int(y.size), bad
    return float(y.mean()), float(y.std(ddof=1) / math.sqrt(y.size)), int(y.size), bad


def expectation(name, setting, samples, prediction, st: Settings, pred_se=0.0) -> Row:
    mean, se, n, bad = _stat(samples)
    tol = st.n_se_expect * math.hypot(se, pred_se)
    return Row(
        name,
        setting,
        float(prediction),
        mean,
        se,
        n,
        tol,
        bool(abs(mean - prediction) <= tol) and not bad,
        f"|mean − prediction| ≤ {st.n_se_expect:g} SE",
        "expectation",
        bad,
    )


def bound(name, setting, samples, value, st: Settings, upper=True) -> Row:
    mean, se, n, bad = _stat(samples)
    tol = st.n_se_bound * se
    ok = mean <= value + tol if upper else mean >= value - tol
    rule = (
        f"mean ≤ bound + {st.n_se_bound:g} SE" if upper else f"mean ≥ bound − {st.n_se_bound:g} SE"
    )
    return Row(
        name,
        setting,
        float(value),
        mean,
        se,
        n,
        tol,
        bool(ok) and not bad,
        rule,
        "upper bound" if upper else "lower bound",
        bad,
    )


def exceeds(name, setting, samples, level, st: Settings) -> Row:
    mean, se, n, bad = _stat(samples)
    tol = st.n_se_expect * se
    return Row(
        name,
        setting,
        float(level),
        mean,
        se,
        n,
        tol,
        bool(mean - level > tol) and not bad,
        f"mean − level > {st.n_se_expect:g} SE",
        "level",
        bad,
    )


def pathwise(name, setting, errors, tol, seeds) -> Row:
    e = np.asarray(errors, np.float64)
    bad = int((~np.isfinite(e)).sum())
    err = float(np.max(np.where(np.isfinite(e), e, -np.inf))) if e.size > bad else float("nan")
    return Row(
        name,
        setting,
        0.0,
        err,
        None,
        int(seeds),
        float(tol),
        bool(err <= tol) and not bad,
        "max error ≤ tolerance",
        "zero",
        bad,
    )


def count(name, setting, n_bad, seeds, rule="count = 0") -> Row:
    """A count that must be 0 (violations, seeds off target)."""
    return Row(
        name, setting, 0.0, float(n_bad), None, int(seeds), 0.0, bool(n_bad == 0), rule, "zero"
    )


def band(name, setting, measured, prediction, rel, seeds, se=None) -> Row:
    return Row(
        name,
        setting,
        float(prediction),
        float(measured),
        se,
        int(seeds),
        float(rel * abs(prediction)),
        bool(abs(measured - prediction) <= rel * abs(prediction)),
        f"|measured − prediction| ≤ {rel:g}·|prediction|",
        "band",
    )


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)


@dataclasses.dataclass
class Outcome:
    """A check's rows, and the data its figure is drawn from."""

    rows: list
    data: dict = dataclasses.field(default_factory=dict)


class Context:
    """Settings plus a memo of experiment runs shared between checks."""

    def __init__(self, settings: Settings):
        self.st = settings
        self._runs = {}

    def run(self, config: ExperimentConfig) -> dict:
        """``stream_view`` of a run (per init: outcomes with the divergence rule applied)."""
        if config not in self._runs:
            self._runs[config] = run_experiment(config, progress=self.st.progress).view()
        return self._runs[config]

    @property
    def basis(self) -> Basis:
        """The basis of a check's own whitened problems (``problems.build_problem``): spectral
        (``M = diag(σ)``) unless the settings ask for dense. Exact in distribution wherever the
        check's init is rotation-invariant (Gaussian factors, HRP on them, ``εV_r``), which every
        check that takes it is."""
        return Basis("spectral" if self.st.basis == "auto" else "dense")

    @property
    def width(self) -> int | None:
        """``devices.width`` of a check's own problems (m = 48, n = 64) in ``basis``: given to
        ``seeds_map`` by the checks that gain from batching their seeds (measured, warm: the
        classic-flow check 40 → 14 s; the checks bound by SVDs gained nothing and keep one seed
        at a time)."""
        return dev.width(self.basis, M_, N_)

    def seeds_map(self, fn, static, args, seeds, desc, width=None):
        return map_seeds(
            fn,
            static,
            args,
            seeds=seeds,
            seed=self.st.seed,
            progress=self.st.progress,
            desc=desc,
            width=width,
        ).out


def experiment(
    spectrum,
    form,
    inits,
    seeds,
    st: Settings,
    *,
    steps=300,
    lr=1.5,
    optimizer="gd",
    record_every=None,
    init_std=None,
    hrp=HrpSpec(),
):
    """A canonical-size experiment config (m = 48, n = 64, r = 4)."""
    return ExperimentConfig(
        problem=ProblemSpec(m=M_, n=N_, spectrum=spectrum),
        lora=LoraSpec(r=R_, form=form),
        train=TrainSpec(
            optimizer=optimizer, lr=lr, steps=steps, record_every=record_every or steps
        ),
        hrp=hrp,
        inits=inits,
        seeds=seeds,
        seed=st.seed,
        init_std=init_std,
        basis=st.basis,
    )


def singular_values_of(spectrum, k=M_):
    return spectrum_values(spectrum, k)
