"""Moved to ``hrp_theory.layers.study`` and ``hrp_theory.layers.kernels``."""

from .._moved import forward

__getattr__ = forward(
    __name__,
    ("hrp_theory.layers.study", "hrp_theory.layers.kernels", "hrp_theory.layers.config"),
)
