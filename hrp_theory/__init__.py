"""hrp-theory: how LoRA initialization decides where fine-tuning ends up (HRP, arXiv 2502.07739).

Data flows one way: spec → problem → init → dynamics → metrics → statistics → report.

Importing the package has no side effects: it sets no XLA flag, starts no JAX backend and picks
no matplotlib backend. ``configure()`` (what ``hrp-sim`` does first) splits the CPU into one XLA
device per core before JAX starts; ``verify`` (the theory's checks) is imported on first use.
"""

from typing import TYPE_CHECKING

from . import bases, distributed, flow, linalg, theory
from ._version import __version__ as __version__
from .dynamics import OPTIMIZERS, TrainResult, TrainSpec, make_optimizer, train
from .experiment import ExperimentConfig, ExperimentResult, HrpSpec, run_experiment
from .factors import FORMS, LoraParams, LoraSpec
from .flow import Flow, gradient_flow
from .inits import INITS, initialize
from .losses import Objective, factor_grads, population_loss, shift_target, train_loss
from .metrics import direction_metrics, principal_angles, time_to_excess
from .preheat import Preheated, preheat_then_svd, thin_svd_of_product
from .problems import Problem, ProblemSpec, make_problem, optimal_loss, problem_from_matrices
from .report import save_experiment, summarize_experiment, table
from .results import load_run
from .runtime import compile_cache, configure
from .seeds import map_seeds, root_key
from .spectra import SPECTRUM_FAMILIES, spectrum_values
from .stats import DIVERGENCE_FACTOR, diverged, paired_difference, summarize

if TYPE_CHECKING:  # imported on first use, below
    from . import verify
    from .verify import CHECKS, run_checks

_LAZY = {"verify": None, "CHECKS": "CHECKS", "run_checks": "run_checks"}


def __getattr__(name):
    """``verify`` and its ``CHECKS`` / ``run_checks``, imported on first use."""
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.verify")
        return module if _LAZY[name] is None else getattr(module, _LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "bases",
    "CHECKS",
    "DIVERGENCE_FACTOR",
    "FORMS",
    "INITS",
    "OPTIMIZERS",
    "SPECTRUM_FAMILIES",
    "ExperimentConfig",
    "ExperimentResult",
    "Flow",
    "HrpSpec",
    "LoraParams",
    "LoraSpec",
    "Objective",
    "Preheated",
    "Problem",
    "ProblemSpec",
    "TrainResult",
    "TrainSpec",
    "compile_cache",
    "configure",
    "direction_metrics",
    "distributed",
    "diverged",
    "factor_grads",
    "flow",
    "gradient_flow",
    "initialize",
    "linalg",
    "load_run",
    "make_optimizer",
    "make_problem",
    "map_seeds",
    "optimal_loss",
    "paired_difference",
    "population_loss",
    "preheat_then_svd",
    "principal_angles",
    "problem_from_matrices",
    "root_key",
    "run_checks",
    "run_experiment",
    "save_experiment",
    "shift_target",
    "spectrum_values",
    "summarize",
    "summarize_experiment",
    "table",
    "theory",
    "thin_svd_of_product",
    "time_to_excess",
    "train",
    "train_loss",
    "verify",
]
