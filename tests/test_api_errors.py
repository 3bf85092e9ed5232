"""Bad input at the API boundary: a ValueError naming the field, before any XLA work."""

import numpy as np
import pytest

from hrp_theory import (
    ExperimentConfig,
    HrpSpec,
    LoraSpec,
    ProblemSpec,
    TrainSpec,
    problem_from_matrices,
    spectrum_values,
)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ExperimentConfig(lora=LoraSpec(r=65)), "r: 65 exceeds"),
        (lambda: ExperimentConfig(hrp=HrpSpec(rank=2)), "preheat_rank"),
        (lambda: ExperimentConfig(hrp=HrpSpec(rank=65)), "preheat_rank"),
        (lambda: ExperimentConfig(hrp=HrpSpec(steps="converged")), "freeze-a"),
        (lambda: ExperimentConfig(hrp=HrpSpec(steps=0)), "preheat_steps"),
        (lambda: ExperimentConfig(seeds=0), "seeds"),
        (lambda: ExperimentConfig(inits=("kaiming", "magic")), "unknown init"),
        (lambda: ExperimentConfig(inits=()), "inits: empty"),
        (
            lambda: ExperimentConfig(
                problem=ProblemSpec(m=6, n=6),
                lora=LoraSpec(r=4),
                inits=("lora-ga",),
                hrp=HrpSpec(rank=4),
            ),
            "lora-ga",
        ),
        (lambda: TrainSpec(steps=0), "steps"),
        (lambda: TrainSpec(lr=float("nan")), "lr"),
        (lambda: TrainSpec(optimizer="rmsprop"), "optimizer"),
        (lambda: LoraSpec(form="dora"), "lora"),
        (lambda: ProblemSpec(spectrum="zipf:1"), "spectrum"),
        (lambda: ProblemSpec(spectrum="values:"), "malformed"),
        (lambda: ProblemSpec(spectrum="values:-1,2"), "values"),
        (lambda: ProblemSpec(m=4, n=8, rank=5), "rank: 5"),
        (lambda: ProblemSpec(noise=0.1), "noise"),
    ],
)
def test_config_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_user_matrices(bad):
    M = np.ones((3, 4))
    M[1, 2] = bad
    with pytest.raises(ValueError, match="M: 1 non-finite"):
        problem_from_matrices(M)
    S = np.eye(4)
    S[0, 0] = bad
    with pytest.raises(ValueError, match="Sigma: 1 non-finite"):
        problem_from_matrices(np.ones((3, 4)), Sigma=S)


def test_user_matrix_shapes():
    with pytest.raises(ValueError, match="W0: shape"):
        problem_from_matrices(np.ones((3, 4)), W0=np.ones((4, 3)))
    with pytest.raises(ValueError, match="2-D"):
        problem_from_matrices(np.ones(3))


def test_spectrum_error_names_fix():
    with pytest.raises(ValueError, match="write values:1,0.5,0.25"):
        spectrum_values("values:1,x", 4)
