"""Config fields that do not shape the compiled program, declared once with ``traced()``.

A field made with ``traced(default)`` holds a number that reaches the jitted code as a traced
array (a learning rate, a spectrum, a scale) or a setting used only on the host (the number of
seeds). ``static_view(config)`` replaces each such field by its compile-time part (by default
the ``TRACED`` marker), so two configs that differ only there share one compilation. Reading a
traced field from a static view gives ``TRACED``, whose arithmetic raises a ``TypeError`` that
says where the number lives instead.
"""

from __future__ import annotations

import copy
import dataclasses


class _Traced:
    """Stands for a traced value in a static view; any arithmetic on it fails loudly."""

    def __repr__(self) -> str:
        return "TRACED"

    def __eq__(self, other) -> bool:
        return isinstance(other, _Traced)

    def __hash__(self) -> int:
        return hash("TRACED")

    def __float__(self):
        raise TypeError(
            "this config field is traced: a static view does not hold its value; "
            "read it from the traced numbers (experiment.Hyper) instead"
        )

    __int__ = __index__ = __float__

    def _fail(self, *_):
        return self.__float__()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = __lt__ = __gt__ = _fail
    __le__ = __ge__ = __bool__ = _fail


TRACED = _Traced()


def _drop(_value):
    return TRACED


def traced(default, static=None):
    """A dataclass field whose value is traced (or host-only). ``static(value)``, if given,
    returns the part of the value that does shape the program (e.g. Σ's eigenbasis)."""
    return dataclasses.field(default=default, metadata={"traced": static or _drop})


def static_view(obj):
    """A copy of a (frozen, possibly nested) dataclass with each traced field replaced by its
    static part. Hashable, so it can key the compile cache."""
    new = copy.copy(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        fn = f.metadata.get("traced")
        if fn is not None:
            object.__setattr__(new, f.name, fn(value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            object.__setattr__(new, f.name, static_view(value))
    return new
