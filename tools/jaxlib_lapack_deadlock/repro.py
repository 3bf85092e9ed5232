"""Minimal reproducer: jaxlib 0.10.2 deadlocks on CPU when two devices run a batched LAPACK call.

    python repro.py            # hangs within seconds (kill it; exit 124 under `timeout`)
    python repro.py --fixed    # the same work through hrp_theory.linalg: finishes

Two XLA CPU devices (``--xla_force_host_platform_device_count=2``) each run a float64 QR of a
batch of 8 matrices 64×64 (``shard_map``). jaxlib splits each batched call over the intra-op
thread pool (one thread per core) and blocks its thread until the pieces are done
(``jax::ParallelBatchMap`` → ``absl::BlockingCounter::Wait``, jaxlib/cpu/lapack_kernels.cc at
jax-v0.10.2). Both pool threads end up running a device's program and waiting for pieces that no
thread is left to run. See README.md for the gdb backtrace.
"""

import os
import sys
import time

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

jax.config.update("jax_enable_x64", True)

fixed = "--fixed" in sys.argv
if fixed:
    from hrp_theory.linalg import qr  # one matrix at a time on CPU (sequential_vmap)
else:
    qr = jnp.linalg.qr

mesh = Mesh(np.array(jax.devices()[:2]), ("d",))


def local(x):  # x: (8, 64, 64) on each device
    return jax.vmap(lambda a: qr(a)[0])(x).sum(axis=(1, 2))


f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
x = jax.random.normal(jax.random.key(0), (16, 64, 64))
print(
    f"pid {os.getpid()}, jax {jax.__version__}, {len(jax.devices())} CPU devices, "
    f"{'hrp_theory.linalg.qr' if fixed else 'jnp.linalg.qr'}",
    flush=True,
)
t0 = time.time()
for i in range(300):
    jax.block_until_ready(f(x + i))
print(f"ok: 300 calls in {time.time() - t0:.1f} s", flush=True)
