"""Where a number came from: code version, packages, machine and XLA settings."""

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys

import jax

from vae_jax import backend

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections",
             "numpy", "tensorflow-datasets", "scikit-learn")


def _git(*args: str) -> str | None:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                         timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict:
  """What decides the bits of a result: a resume in a different one may differ."""
  devices = jax.devices()
  return {
      "jax": jax.__version__,
      "jaxlib": importlib.metadata.version("jaxlib"),
      "platform": devices[0].platform,
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "process_count": jax.process_count(),
      "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "train_compiler_options": backend.train_compiler_options(),
  }


def provenance() -> dict:
  """The environment plus the code version and every package that matters."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  status = _git("status", "--porcelain", "--untracked-files=no")
  return {
      "git_commit": _git("rev-parse", "HEAD"),
      "git_dirty": None if status is None else bool(status),
      "python": sys.version.split()[0],
      "host": platform.node(),
      "argv": sys.argv,
      "packages": versions,
      **environment(),
  }


def fingerprint(tree) -> str:
  """SHA-256 (first 16 hex digits) of a pytree of host arrays' bytes."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    h.update(leaf.tobytes())
  return h.hexdigest()[:16]
