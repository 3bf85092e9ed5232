"""Notebooks (jupytext percent .py files) execute end to end at smoke size."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    if "real" in path.name:
        pytest.importorskip("flax")
        from hrp_theory.real import checkpoints, text
        try:
            checkpoints.minilm_path()
            text.polarity_path()
        except (ValueError, FileNotFoundError) as e:
            pytest.skip(f"needs MiniLM and the polarity data (.ci/run installs both): {e}")
    monkeypatch.setenv("HRP_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
