"""Checks at the API boundary: each raises ``ValueError("field: what is wrong; the fix")``.

Every config and entry point validates its inputs with these helpers, so a bad value fails
before any XLA work, with one line that names the field (the CLI prints it and exits 2).
"""

from __future__ import annotations

import math
import numbers

#: Root seeds are 64-bit: ``seeds.root_key`` maps ``seed`` to the threefry key ``[seed >> 32,
#: seed & 0xffffffff]``, which is ``jax.random.key(seed)`` for every seed below 2³².
SEED_LIMIT = 2**64
#: Seed indices are folded into the root key as 32-bit integers.
MAX_SEEDS = 2**31 - 1
#: The widest layer a problem may have (m or n); a spectrum is a vector of min(m, n) numbers.
MAX_DIM = 2**24
#: Step counters are 32-bit integers inside the jitted loops.
MAX_STEPS = 2**31 - 1
#: Token cap of a real-model example: BERT's position table (a model's own
#: ``max_position_embeddings`` is checked when it loads).
MAX_TOKENS = 512
#: Examples in one real-model batch (its activations must fit in memory).
MAX_BATCH = 4096


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value, field: str, maximum: int | None = None) -> int:
    """``value`` is an integer ≥ 1 (and ≤ ``maximum`` when given)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{field}: {value!r} must be a positive integer")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}: {value!r} exceeds the largest allowed value {maximum}")
    return int(value)


def optional_positive_int(value, field: str, maximum: int | None = None) -> int | None:
    return None if value is None else positive_int(value, field, maximum)


def positive_number(value, field: str) -> float:
    """``value`` is a finite number > 0."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{field}: {value!r} must be a positive number")
    return float(value)


def optional_positive_number(value, field: str) -> float | None:
    return None if value is None else positive_number(value, field)


def non_negative(value, field: str) -> float:
    """``value`` is a finite number ≥ 0."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{field}: {value!r} must be a finite number >= 0")
    return float(value)


def in_interval(value, field: str, lo: float, hi: float, *, open_hi: bool = False) -> float:
    """``lo ≤ value ≤ hi`` (``< hi`` with ``open_hi``)."""
    ok = (
        _is_number(value)
        and math.isfinite(value)
        and lo <= value
        and (value < hi if open_hi else value <= hi)
    )
    if not ok:
        raise ValueError(f"{field}: {value!r} must lie in [{lo:g}, {hi:g}{')' if open_hi else ']'}")
    return float(value)


def one_of(value, field: str, choices, what: str = "") -> str:
    """``value`` is one of ``choices`` (the message lists them)."""
    if value not in choices:
        raise ValueError(
            f"{field}: unknown {what + ' ' if what else ''}{value!r}; use one of "
            f"{', '.join(map(str, choices))}"
        )
    return value


def seed(value, field: str = "seed") -> int:
    """A root seed: an integer in ``[0, 2⁶⁴)``; each value gives its own random stream."""
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(
            f"{field}: {value!r} must be an integer in [0, 2^64 - 1] "
            f"(each value gives its own random stream)"
        )
    return int(value)


def names(text_or_items, field: str) -> tuple[str, ...]:
    """A comma list (``"a,b"``) or a sequence of names, stripped, non-empty, each once."""
    items = text_or_items.split(",") if isinstance(text_or_items, str) else list(text_or_items)
    out = tuple(str(s).strip() for s in items)
    if not out or any(not s for s in out):
        raise ValueError(
            f"{field}: empty name in {text_or_items!r}; give a comma list such as 'a,b'"
        )
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise ValueError(
            f"{field}: {', '.join(twice)} named twice in {','.join(out)!r}; list each once"
        )
    return out


def regex(value: str, field: str) -> str:
    """A valid regular expression (``re.compile``), else ``ValueError`` naming the field."""
    import re

    try:
        re.compile(value)
    except (re.error, TypeError) as e:
        raise ValueError(f"{field}: {value!r} is not a valid regular expression ({e})") from None
    return value
