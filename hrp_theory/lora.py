"""Moved to ``hrp_theory.factors`` ("lora" now names only the end-to-end study, ``hrp-sim lora``
and ``hrp_theory.finetune``)."""

from ._moved import alias

alias(__name__, "hrp_theory.factors")
