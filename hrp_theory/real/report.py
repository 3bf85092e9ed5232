"""Moved to ``hrp_theory.layers.report``."""

from .._moved import alias

alias(__name__, "hrp_theory.layers.report")
