"""Deprecated: the real-model side now lives in three packages, ``hrp_theory.models`` (the model
and its data), ``hrp_theory.layers`` (the per-layer study) and ``hrp_theory.finetune`` (the
end-to-end LoRA study). The old module paths below keep working until hrp-theory 0.2, each with a
``DeprecationWarning``."""

import warnings

warnings.warn(
    "hrp_theory.real is split into hrp_theory.models, hrp_theory.layers and hrp_theory.finetune; "
    "the old paths work until hrp-theory 0.2",
    DeprecationWarning,
    stacklevel=2,
)
