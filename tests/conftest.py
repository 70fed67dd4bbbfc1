"""Shared fixtures: configs in their small form, a linear-Gaussian model."""

import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Most of the suite's time is XLA compiling the same small programs in many
# runs and subprocesses: share them through XLA's persistent compilation cache
# (one per session; the compiled code, and so every number, is the same).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="vae_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite's programs are small and compiled once each: LLVM's optimisation
# passes cost more time than they save (about a third of a small run's
# compile). XLA's own passes, and so the arithmetic, are unchanged.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_backend_optimization_level=0").strip()

from vae_jax import cli  # noqa: E402
from vae_jax import config as config_lib  # noqa: E402


def experiment(name: str, arg: str | None = "small"):
  spec = os.path.join(ROOT, "experiments", f"{name}.py") + (f":{arg}" if arg else "")
  config = cli.load_config_file(spec)
  config.train.progress_bar = False
  return config


def model_config(name: str, **fields):
  """A tiny model config of `name` (flat, bottom_up, top_down) for 8×8 images;
  `fields` override config.model's fields."""
  c = config_lib.default().model
  c.name, c.likelihood = name, "bernoulli"
  c.encoder_hidden = c.decoder_hidden = (16,)
  c.latent_dim, c.latent_dims, c.stochastic_hidden = 3, (4, 3), ((5,),)
  c.width, c.latent_channels, c.groups_per_scale = 8, 2, (1, 2)
  for k, v in fields.items():
    setattr(c, k, v)
  return c


def train_cli(workdir, *args, env=None) -> subprocess.CompletedProcess:
  """scripts/train.py in a subprocess (the digits small form unless args give --config)."""
  if not any(a.startswith("--config=") for a in args):
    args = ("--config=experiments/digits.py:small", *args)
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args,
       f"--workdir={workdir}"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


@pytest.fixture
def digits_config():
  return experiment("digits")


def nan_gradient_at(params, step, bad_step):
  """A term to add to a loss: 0 in value at every step, and a gradient 0 · d√u
  that is NaN where u < 0, at `bad_step` only: a finite loss whose gradient
  is not finite."""
  import jax.numpy as jnp
  w = params["decoder"]["output"]["bias"].reshape(-1)[0]
  u = (jnp.abs(w) + 1.0) * jnp.where(step == bad_step, -1.0, 1.0)
  return jnp.where(w > -jnp.inf, 0.0, jnp.sqrt(u))


def signal_at_dispatch(n: int, signum):
  """A train.StopOnSignal whose signal `signum` arrives at the loop's n-th read
  of it: the training loops read it once per dispatch, so at the end of the
  n-th dispatch."""
  from vae_jax import train

  class SignalAt(train.StopOnSignal):
    reads = 0

    @property
    def received(self):
      SignalAt.reads += 1
      return signum if SignalAt.reads == n else None

    @received.setter
    def received(self, value):
      pass

  return SignalAt


def patch_nan_gradient_at(monkeypatch, bad_step):
  """Objective.loss with `nan_gradient_at(…, bad_step)` added, for every run."""
  from vae_jax.objectives import Objective
  real = Objective.loss

  def loss(self, model, params, batch, rng, step):
    value, metrics = real(self, model, params, batch, rng, step)
    return value + nan_gradient_at(params, step, bad_step), metrics

  monkeypatch.setattr(Objective, "loss", loss)
