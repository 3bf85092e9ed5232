"""Tests run in float64 (THEORY's checks are stated there); CLI tests run float32 subprocesses."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import hrp_theory  # noqa: E402,F401  (sets the XLA CPU flags before the backend starts)
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
