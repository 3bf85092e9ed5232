"""Moved to ``hrp_theory.finetune`` (``study``, ``data``, ``programs``, ``inits``, ``bridge``,
``runs``, ``peft``)."""

from .._moved import forward

F = "hrp_theory.finetune."
__getattr__ = forward(
    __name__,
    tuple(F + m for m in ("study", "data", "programs", "inits", "bridge", "runs", "peft")),
    renamed={
        "_optimizer": F + "programs:optimizer",
        "_static": F + "inits:init_static",
        "_hyper": F + "inits:init_hyper",
        "_programs": F + "programs:compiled",
    },
)
