"""Moved to ``hrp_theory.models.tasks``."""

from .._moved import alias

alias(__name__, "hrp_theory.models.tasks")
