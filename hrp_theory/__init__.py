"""hrp-theory: how LoRA initialization decides where fine-tuning ends up (HRP, arXiv 2502.07739).

Data flows one way: spec → problem → init → dynamics → metrics → statistics → report.
"""

__version__ = "0.1.0"

from . import _xla

_xla.apply()  # before anything starts the JAX backend (see _xla.py)


from . import distributed, flow, theory
from .dynamics import OPTIMIZERS, TrainResult, TrainSpec, make_optimizer, train
from .flow import Flow, gradient_flow
from .inits import INITS, initialize
from .lora import FORMS, LoraParams, LoraSpec
from .losses import Objective, factor_grads, population_loss, shift_target, train_loss
from .metrics import direction_metrics, principal_angles, time_to_excess
from .montecarlo import ExperimentConfig, ExperimentResult, HrpSpec, map_seeds, run_experiment
from .preheat import Preheated, preheat_then_svd, thin_svd_of_product
from .problems import (SPECTRUM_FAMILIES, Problem, ProblemSpec, make_problem, optimal_loss,
                       problem_from_matrices, spectrum_values)
from .report import save_experiment, summarize_experiment, table
from .stats import paired_difference, summarize
from .verify import CHECKS, run_checks

__all__ = [
    "CHECKS", "Flow", "distributed", "flow", "gradient_flow", "map_seeds", "run_checks", "theory",
    "ExperimentConfig", "ExperimentResult", "FORMS", "HrpSpec", "INITS", "LoraParams", "LoraSpec",
    "OPTIMIZERS", "Objective", "Preheated", "Problem", "ProblemSpec", "SPECTRUM_FAMILIES",
    "TrainResult", "TrainSpec", "direction_metrics", "factor_grads", "initialize",
    "make_optimizer", "make_problem", "optimal_loss", "paired_difference", "population_loss",
    "preheat_then_svd", "principal_angles", "problem_from_matrices", "run_experiment",
    "save_experiment", "shift_target", "spectrum_values", "summarize", "summarize_experiment",
    "table", "thin_svd_of_product", "time_to_excess", "train", "train_loss",
]
