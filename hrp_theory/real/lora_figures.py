"""Moved to ``hrp_theory.finetune.figures``."""

from .._moved import alias

alias(__name__, "hrp_theory.finetune.figures")
