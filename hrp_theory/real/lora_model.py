"""Moved to ``hrp_theory.finetune.adapters`` and ``hrp_theory.finetune.peft``."""

from .._moved import forward

__getattr__ = forward(__name__, ("hrp_theory.finetune.adapters", "hrp_theory.finetune.peft"))
