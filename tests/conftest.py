"""Tests run in float64 (THEORY's checks are stated there); CLI tests run float32 subprocesses."""

import os
import sys
from pathlib import Path

# The repo's tools (import_graph, render_check, adversarial…) are importable by the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
os.environ.setdefault("MPLBACKEND", "Agg")
# Compiled programs are shared by the tests of one pytest run (its workers, and the hrp-sim, script
# and notebook processes they start) through a persistent compilation cache in a fresh folder,
# removed when the run ends: the suite stays hermetic (never ~/.cache), and a program that
# several tests compile (the tiny BERT's train step, verify's checks) compiles once. The xdist
# workers inherit the folder of the process that starts them. HRP_COMPILE_CACHE=off turns it off;
# tests/test_runtime.py checks the cache itself in folders of its own.
if "HRP_COMPILE_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="hrp-test-xla-")
    os.environ["HRP_COMPILE_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# Under xdist each worker gets one OpenMP thread: PyTorch's OpenMP threads spin while they wait,
# and two workers' spinning threads on two cores made tests/test_peft_inits.py 2.2x slower
# (190 s against 87 s with -n 2). A run without workers keeps the default.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The suite compiles hundreds of small programs and runs most of them once, so LLVM's
# optimisation passes cost more than they save: at level 0 the CLI study test compiled in 33 s
# instead of 55 s (docs/performance.md, "The test suite"). XLA's own (HLO) passes still run, so
# the programs compute the same thing. Processes a test starts inherit the flag; one that sets
# its own devices passes it on with helpers.xla_flags(). A flag the caller set is kept.
from helpers import COMPILE_FLAG

if COMPILE_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {COMPILE_FLAG}=0".strip()

import hrp_theory

hrp_theory.configure()  # the library default of the entry points: one XLA CPU device per core
hrp_theory.compile_cache()  # the run's folder above (None when turned off)
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

# tests/multidevice needs 8 devices, fixed when JAX starts: tests/test_sharding.py runs it in its
# own pytest process with XLA_FLAGS=--xla_force_host_platform_device_count=8. (A suite started
# with fewer devices, e.g. --cpu-devices' 2, skips the folder here.)
collect_ignore = [] if jax.local_device_count() >= 8 else ["multidevice"]

# The longest tests start first (longest-processing-time order): with two workers, a long test
# that starts last leaves one worker idle while it runs. Measured durations of the slow tier on
# 2 cores (docs/performance.md, "The test suite"), the slow tier's then the fast tier's; every
# other test keeps its collected order.
LONGEST_FIRST = (
    "tests/test_lora.py::test_cli_writes_outputs_and_resumes",
    "tests/test_peft.py::test_exported_adapter_reproduces_the_jax_model_in_peft",
    "tests/test_peft_inits.py::test_corda_is_pefts_on_the_same_examples",
    "tests/test_theory.py::test_hrp_residual_draws_agree_with_the_simulated_preheat",
    "tests/test_layout.py::test_smoke_studies_give_the_numbers_recorded_before_the_move",
    "tests/test_real.py::test_minilm_finetune_then_real_study_end_to_end",
    "tests/test_notebooks.py::test_notebook_executes[04_real_lora.py]",
    "tests/test_verify.py::test_verify_quick_passes_every_check",
    "tests/test_simulations.py::test_simulation_smoke[lora_study.py]",
    "tests/test_peft_inits.py::test_lora_ga_and_lora_one_follow_the_reference_on_the_same_gradient",
    "tests/test_notebooks.py::test_notebook_executes[03_real_layers.py]",
    "tests/test_notebooks.py::test_notebook_executes[02_theory_vs_simulation.py]",
    "tests/test_docs_render.py::test_every_formula_is_typeset_offline",
    "tests/test_docs.py::test_python_blocks_run_as_written[README.md]",
    "tests/test_docs.py::test_python_blocks_run_as_written[getting-started.md]",
    "tests/test_curvature.py::test_lanczos_matches_the_dense_hessian_of_the_synthetic_lora_loss",
    "tests/test_sweep.py::test_zipped_lists",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))
