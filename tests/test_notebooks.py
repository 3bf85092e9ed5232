"""Notebooks (jupytext percent .py files) execute end to end at smoke size in a Jupyter kernel,
with the kernel's own (inline) matplotlib backend, as JupyterLab runs them, and show figures."""

from pathlib import Path

import pytest
from helpers import xla_flags

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))
#: Figures each notebook shows (at least).
FIGURES = {
    "01_quickstart.py": 3,
    "02_theory_vs_simulation.py": 1,
    "03_real_layers.py": 2,
    "04_real_lora.py": 3,
}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    if "real" in path.name:
        pytest.importorskip("flax")
        from hrp_theory.models import checkpoints, text

        try:
            checkpoints.minilm_path()
            text.polarity_path()
        except (ValueError, FileNotFoundError) as e:
            pytest.skip(f"needs MiniLM and the polarity data (.ci/run installs both): {e}")
    monkeypatch.setenv("HRP_SMOKE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks inline, as in JupyterLab
    # the notebook's own H.configure() sets the devices; the suite's compile flag (conftest) stays
    monkeypatch.setenv("XLA_FLAGS", xla_flags())
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    as_text = [
        o
        for o in outputs
        if "data" in o
        and "image/png" not in o["data"]
        and o["data"].get("text/plain", "").startswith("<Figure size")
    ]
    assert not as_text, "a figure printed as text instead of an image"
    assert len(images) >= FIGURES[path.name], f"{path.name}: {len(images)} figures shown"
