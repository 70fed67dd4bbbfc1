"""Picks the device named by `config.backend`, with no silent fallback."""

import functools
import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vae_jax import threefry
from vae_jax.errors import UserError

# On a CPU, programs lowered after this import hash their keys and draws
# through vae_jax.threefry: the same bits; in a loop as with JAX's own, but
# unrolled where small in the training steps (`jit_train_step`).
threefry.install_cpu_lowering()


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


def _cpu_has_avx512() -> bool:
  try:
    with open("/proc/cpuinfo") as f:
      return any(line.startswith("flags") and " avx512f" in line for line in f)
  except OSError:  # not Linux: keep XLA's defaults
    return False


def current_platform() -> str:
  """The platform a `jax.jit` here compiles for: that of the default device
  (`jax.default_device`, as the training loops set it), else JAX's default
  backend."""
  device = jax.config.jax_default_device
  if device is None:
    return jax.default_backend()
  return device if isinstance(device, str) else device.platform


def train_compiler_options(platform: str | None = None) -> dict | None:
  """XLA options for compiling a training step on `platform` (default:
  `current_platform()`), or None for XLA's defaults.

  On a CPU with AVX-512, 512-bit vectors for XLA's own loops (the optimiser's
  pass over the parameters and moments, the per-pixel likelihood): XLA
  prefers 256 bits for the CPUs that slow their clock under 512-bit code,
  which the matmul libraries it calls use anyway. On an AMD EPYC the
  Flax-example step ran 1-6 % faster (the same step compiled both ways,
  timed in turn). A user's own
  --xla_cpu_prefer_vector_width in XLA_FLAGS wins, and an XLA that no longer
  knows the option gets none. Evaluation keeps XLA's defaults.
  """
  options = _train_compiler_options(platform or current_platform())
  return None if options is None else dict(options)


def jit_train_step(fn, platform: str | None = None, **jit_kwargs) -> threefry.SmallHashesUnrolled:
  """`jax.jit` for a training step: `train_compiler_options(platform)`, and
  its small Threefry hashes lowered without a loop (`vae_jax.threefry`)."""
  return threefry.SmallHashesUnrolled(
      jax.jit(fn, compiler_options=train_compiler_options(platform), **jit_kwargs))


@functools.cache
def _train_compiler_options(platform: str) -> dict | None:
  if (platform != "cpu" or not _cpu_has_avx512()
      or "xla_cpu_prefer_vector_width" in os.environ.get("XLA_FLAGS", "")):
    return None
  options = {"xla_cpu_prefer_vector_width": 512}
  try:
    probe = jax.device_put(np.float32(0), jax.devices("cpu")[0])
    jax.jit(lambda x: x + 1, compiler_options=options).lower(probe).compile()
  except Exception:  # noqa: BLE001 -- an XLA without the option: its defaults
    return None
  return options


def data_mesh(backend: str) -> jax.sharding.Mesh:
  """A 1-D mesh, axis 'data', over every device of `backend` in every process:
  the global batch is split over it, the parameters replicated (jax.jit inserts
  the reductions). Its first device is `select_device(backend)`."""
  select_device(backend)
  return jax.sharding.Mesh(np.asarray(jax.devices(backend)), ("data",))


def initialize_distributed(backend: str, coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins this process to a multi-process (multi-host) run via JAX's own
  runtime, before anything else touches JAX. With no arguments JAX detects the
  cluster (SLURM, Open MPI, Kubernetes, Cloud TPU); on CPU the collectives run
  over gloo (TCP), so processes on one machine can test the multi-host path."""
  if backend == "cpu":
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (RuntimeError, ValueError) as e:
    raise UserError(f"could not join the distributed run ({str(e).splitlines()[0][:200]}); "
                    "give --coordinator_address=HOST:PORT, --num_processes and --process_id, "
                    "or run under a cluster JAX detects (SLURM, Open MPI, Cloud TPU)") from None


def is_lead() -> bool:
  """Whether this process writes files, logs and figures: process 0 only."""
  return jax.process_index() == 0


def global_array(mesh: jax.sharding.Mesh, spec: PartitionSpec, local) -> jax.Array:
  """The global array whose part on this process's devices is `local`: for an
  axis split over 'data', this process's contiguous share; for one not split,
  the whole (every process gives the same values)."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(local))


def on_each_device(mesh: jax.sharding.Mesh, local: np.ndarray) -> jax.Array:
  """A (mesh.size * len(local), ...) array, split on axis 0 over 'data', whose
  block on each device is this process's `local` (its shard of the training
  set): per-device gathers then never leave the device."""
  mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  return jax.make_array_from_single_device_arrays(
      (mesh.size * len(local),) + local.shape[1:], NamedSharding(mesh, PartitionSpec("data")),
      [jax.device_put(local, d) for d in mine])


def barrier(name: str) -> None:
  """Waits for every process (a no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def gather(tree):
  """Host numpy copies of (possibly cross-process) arrays, whole on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
