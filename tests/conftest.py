"""Tests run in float64 (THEORY's checks are stated there); CLI tests run float32 subprocesses."""

import os
import sys
from pathlib import Path

# The repo's tools (import_graph, render_check, adversarial…) are importable by the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
os.environ.setdefault("MPLBACKEND", "Agg")
# hrp-sim keeps compiled programs in ~/.cache; the suite stays hermetic (tests/test_runtime.py
# checks the cache itself in a folder of its own).
os.environ.setdefault("HRP_COMPILE_CACHE", "off")

import hrp_theory

hrp_theory.configure()  # the library default of the entry points: one XLA CPU device per core
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

# tests/multidevice needs 8 devices, fixed when JAX starts: tests/test_sharding.py runs it in its
# own pytest process with XLA_FLAGS=--xla_force_host_platform_device_count=8. (A suite started
# with fewer devices, e.g. --cpu-devices' 2, skips the folder here.)
collect_ignore = [] if jax.local_device_count() >= 8 else ["multidevice"]
