"""Moved to ``hrp_theory.models.checkpoints``."""

from .._moved import alias

alias(__name__, "hrp_theory.models.checkpoints")
