"""Moved to ``hrp_theory.models.text``."""

from .._moved import alias

alias(__name__, "hrp_theory.models.text")
