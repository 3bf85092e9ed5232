"""hrp-theory: how LoRA initialization decides where fine-tuning ends up (HRP, arXiv 2502.07739).

Data flows one way: spec → problem → init → dynamics → metrics → statistics → report.

Importing the package has no side effects and is quick: it sets no XLA flag, starts no JAX
backend, picks no matplotlib backend, and imports each public name (and JAX with it) on first
use. ``configure()`` (what ``hrp-sim`` does first) splits the CPU into one XLA device per core
before JAX starts.
"""

from typing import TYPE_CHECKING

from ._version import __version__ as __version__

#: The public names and the module each comes from; each is imported on first use, so importing
#: the package (and ``hrp-sim`` starting) costs no JAX import until a name is needed.
_FROM = {
    "dynamics": ("OPTIMIZERS", "TrainResult", "TrainSpec", "make_optimizer", "train"),
    "experiment": ("ExperimentConfig", "ExperimentResult", "HrpSpec", "run_experiment"),
    "factors": ("FORMS", "LoraParams", "LoraSpec"),
    "flow": ("Flow", "gradient_flow"),
    "inits": ("INITS", "initialize"),
    "losses": ("Objective", "factor_grads", "population_loss", "shift_target", "train_loss"),
    "metrics": ("direction_metrics", "principal_angles", "time_to_excess"),
    "preheat": ("Preheated", "preheat_then_svd", "thin_svd_of_product"),
    "problems": ("Problem", "ProblemSpec", "make_problem", "optimal_loss", "problem_from_matrices"),
    "report": ("save_experiment", "summarize_experiment", "table"),
    "results": ("load_run",),
    "runtime": ("compile_cache", "configure"),
    "seeds": ("map_seeds", "root_key"),
    "spectra": ("SPECTRUM_FAMILIES", "spectrum_values"),
    "stats": ("DIVERGENCE_FACTOR", "diverged", "paired_difference", "summarize"),
    "verify": ("CHECKS", "run_checks"),
}
_LAZY = {name: module for module, names in _FROM.items() for name in names}
_MODULES = ("bases", "distributed", "flow", "linalg", "theory", "verify")

if TYPE_CHECKING:  # what a type checker and an IDE see
    from . import bases, distributed, flow, linalg, theory, verify
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
    from .verify import CHECKS, run_checks


def __getattr__(name):
    """The public names and modules, imported on first use."""
    import importlib
    import importlib.util

    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")  # any submodule: H.results, H.cli
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_MODULES))


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
