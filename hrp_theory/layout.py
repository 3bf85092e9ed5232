"""The seed-minor layout: many small runs with the seed axis last.

Vmapped, a seed's small matrices (the reduced basis: a few times r wide) are laid out seeds
first, and XLA emits one tiny product per operation and seed batch, so a CPU waits on
per-operation overhead. With the seeds in the last axis every product of ``losses`` (written
over the first two axes, ``small_matmul``) is a broadcast multiply and a sum whose innermost
loop runs over seeds, and XLA fuses a whole training step into a few vectorised loops.

``seed_minor(fn, width)`` is ``fn`` with a batching rule: vmapped over a batch that
``devices.seeds_last`` accepts for the arguments' width, it moves the batched arguments' seed
axis last, runs ``fn`` itself on them (its arrays then carry trailing seed axes) and moves the
outputs' seed axis back to the front, so a caller sees what ``jax.vmap(fn)`` returns; otherwise
it is ``jax.vmap(fn)``.
On CPU such a program is compiled without XLA's YNNPACK fusion of reductions
(``devices.compiler_options``): on these reductions over a middle axis it ran a step 10× slower
than XLA's own loop fusion.
``dynamics.train`` is wrapped, so the main runs and HRP's preheat of a vmapped seed batch use it
with no other change to the per-seed code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import devices as dev

#: How many times a seed-minor program was traced (the tests check the branch is taken).
SEEDS_LAST_TRACES = 0


def widest(tree) -> int:
    """The largest matrix dimension of the arrays in ``tree`` (0 for none)."""
    return max((max(x.shape[:2], default=0) for x in jax.tree.leaves(tree)), default=0)


def seed_minor(fn, width, per_seed: int = 1):
    """``fn(*args)`` whose vmap over a batch runs seed-minor when ``devices.seeds_last(batch,
    width(*args))`` (``width``: the arguments' widest matrix, None if not a candidate). The first
    ``per_seed`` arguments are the per-seed state: seed-minor, an unbatched one of them (a factor
    that starts at 0 for every seed) is given the seed axis; the others keep theirs or none."""
    f = jax.custom_batching.custom_vmap(fn)

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        if not dev.seeds_last(axis_size, width(*args)):
            axes = jax.tree.map(lambda b: 0 if b else None, list(in_batched))
            out = jax.vmap(fn, in_axes=tuple(axes))(*args)
        else:
            global SEEDS_LAST_TRACES
            SEEDS_LAST_TRACES += 1
            last = lambda b, x: jnp.moveaxis(x, 0, -1) if b else x
            spread = lambda b, x: (
                last(b, x) if b else jnp.broadcast_to(x[..., None], (*x.shape, axis_size))
            )
            moved = [
                jax.tree.map(spread if i < per_seed else last, b, x)
                for i, (b, x) in enumerate(zip(in_batched, args))
            ]
            out = fn(*moved)
            out = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), out)
        return out, jax.tree.map(lambda _: True, out)

    return f
