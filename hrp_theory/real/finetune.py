"""Moved to ``hrp_theory.layers.full_finetune``."""

from .._moved import alias

alias(__name__, "hrp_theory.layers.full_finetune")
