"""Picks the device named by `config.backend`, with no silent fallback."""

import os

import jax

from vae_jax.errors import UserError


def select_device(backend: str) -> jax.Device:
  """The first device of `backend` ('cpu', 'gpu' or 'tpu'), or a UserError.

  For 'cpu', JAX is told before it starts not to probe (or reserve memory on)
  accelerators; once JAX's backends are up this has no effect, and is harmless.
  """
  fresh = not jax._src.xla_bridge.backends_are_initialized()  # noqa: SLF001
  if backend == "cpu" and fresh:
    jax.config.update("jax_platforms", "cpu")
  if backend == "gpu" and fresh and "xla_gpu_deterministic_ops" not in os.environ.get(
      "XLA_FLAGS", ""):
    # Policy: same config + seed -> same bits on a GPU too (XLA's deterministic
    # scatter and reductions; recorded with the run's XLA flags).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_gpu_deterministic_ops=true").strip()
  try:
    devices = jax.devices(backend)
  except RuntimeError:
    devices = []
  if not devices:
    found = sorted({d.platform for d in jax.devices()})
    fix = ("install requirements-gpu.txt on a machine with a CUDA GPU" if backend == "gpu"
           else "run on a TPU host with jax[tpu]")
    raise UserError(f"config.backend={backend!r} but JAX finds only {', '.join(found)} "
                    f"devices; {fix}, or set --config.backend={found[0]}")
  return devices[0]


def data_mesh(backend: str) -> jax.sharding.Mesh:
  """A 1-D mesh, axis 'data', over every device of `backend`: the global batch
  is split over it, the parameters replicated (jax.jit inserts the reductions).
  Its first device is `select_device(backend)`."""
  import numpy as np
  select_device(backend)
  return jax.sharding.Mesh(np.asarray(jax.devices(backend)), ("data",))
