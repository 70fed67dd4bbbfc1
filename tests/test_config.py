"""Configs: every shipped experiment builds; every mistake is one line."""

import glob
import os
import pathlib

import numpy as np
import pytest

from vae_jax import cli, data, models
from vae_jax import config as config_lib
from vae_jax.errors import UserError

from conftest import ROOT, experiment, train_cli

EXPERIMENTS = sorted(os.path.basename(p)[:-3]  # the configs (results_table.py lists rows)
                     for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
                     if "def get_config" in pathlib.Path(p).read_text())
# The image shape each experiment's data have, to build its model without data.
SHAPES = {"digits": (8, 8, 1), "flax_vae_binarized_mnist": (28, 28, 1),
          "mnist_dynamic": (28, 28, 1), "linear_gaussian": (4, 4, 1), "iwae_burda": (28, 28, 1),
          "iwae_two_layer": (28, 28, 1), "hierarchical_mnist": (28, 28, 1),
          "cifar10": (32, 32, 3), "linear_gaussian_hierarchy": (4, 4, 1),
          "mnist_one_hour": (28, 28, 1)}


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("arg", [None, "small"])
def test_every_experiment_validates_and_builds(name, arg):
  c = experiment(name, arg)
  config_lib.validate(c)
  levels = {"bernoulli": 2, "gaussian": None}.get(c.model.likelihood,
                                                  256 if SHAPES[name][-1] == 3 else 17)
  model = models.build(c.model, data.DataSpec(SHAPES[name], levels))
  assert list(model.groups) and type(model).__name__.lower().replace("_", "") == (
      c.model.name.replace("_", ""))


@pytest.mark.parametrize("path,value,message", [
    ("model.latent_dim", 0, "config.model.latent_dim=0 is out of range"),
    ("optimizer.learning_rate", 0.0, "must be > 0"),
    ("objective.beta", -1.0, "objective.beta=-1.0 is out of range"),
    ("data.name", "imagenet", "choose one of digits, npz"),
    ("model.likelihood", "poisson", "config.model.likelihood='poisson'"),
    ("backend", "metal", "choose one of cpu, gpu, tpu"),
    ("train.batch_size", "64", "must be a number"),
    ("model.encoder_hidden", (0,), "positive layer sizes"),
])
def test_validate_names_the_field(path, value, message):
  c = config_lib.default()
  *parents, leaf = path.split(".")
  node = c
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = value
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
    config_lib.validate(c)


@pytest.mark.parametrize("overrides,message", [
    ({"objective.name": "iwae", "objective.kl": "mc", "objective.beta": 0.5}, "β-weighting"),
    ({"objective.name": "iwae"}, "set objective.kl=mc"),
    ({"objective.name": "iwae", "objective.kl": "mc", "objective.kl_warmup_steps": 10},
     "warm-up"),
    ({"objective.name": "iwae", "objective.kl": "mc", "objective.free_bits": 0.5},
     "free bits act"),
    ({"objective.free_bits": 0.5, "objective.kl": "mc"}, "free bits clamp"),
    ({"data.dequantize": True}, "dequantised pixels are continuous"),
    ({"data.binarize": "dynamic"}, "binary pixels need"),
    ({"data.name": "npz"}, "needs data.path"),
    ({"optimizer.schedule": "cosine"}, "needs optimizer.decay_steps"),
    ({"optimizer.weight_decay": 0.1}, "needs optimizer.name=adamw"),
    ({"model.output_bias": "data_mean", "model.name": "top_down"}, "needs one logit per pixel"),
    ({"model.output_bias": "data_mean", "model.likelihood": "gaussian"}, "set model.output_bias"),
])
def test_invalid_combinations_are_refused(overrides, message):
  c = config_lib.default()
  for path, value in overrides.items():
    section, leaf = path.split(".")
    c[section][leaf] = value
  with pytest.raises(UserError, match=message):
    config_lib.validate(c)


def test_valid_combinations_pass():
  c = config_lib.default()
  c.objective.name, c.objective.kl, c.objective.num_samples = "iwae", "mc", 5
  config_lib.validate(c)
  c = config_lib.default()
  c.objective.beta, c.objective.kl_warmup_steps, c.objective.free_bits = 4.0, 100, 0.1
  config_lib.validate(c)


def test_changed_fields_ignores_safe_ones():
  old = config_lib.flatten(config_lib.default())
  new_config = config_lib.default()
  new_config.train.num_steps = 99
  new_config.eval.num_importance_samples = 7
  assert config_lib.changed_fields(old, config_lib.flatten(new_config)) == []
  del old["train.ema_decay"]  # a run recorded before the field existed, left unset
  assert config_lib.changed_fields(old, config_lib.flatten(new_config)) == []
  new_config.model.latent_dim = 3
  new_config.seed = 4
  assert config_lib.changed_fields(old, config_lib.flatten(new_config)) == [
      "model.latent_dim", "seed"]


def _train_cli(*args, workdir="/nonexistent-never-created"):
  return train_cli(workdir, *args)


@pytest.mark.parametrize("args,message", [
    (["--config.model.latnt_dim=3"],
     "unknown config field config.model.latnt_dim; did you mean config.model.latent_dim?"),
    (["--config.modl.latent_dim=3"], "unknown config field config.modl"),
    (["--config.model.latent_dim=abc"], "--config.model.latent_dim=abc"),
    (["--config.model.latent_dim=-2"], "config.model.latent_dim=-2 is out of range"),
    (["--config.objective.name=iwae"], "set objective.kl=mc"),
    (["--config.backend=gpu"], "config.backend='gpu' but JAX finds only cpu"),
    (["--config=experiments/nope.py"], "config file 'experiments/nope.py' not found"),
])
def test_cli_config_mistakes_are_one_line(args, message):
  if not any(a.startswith("--config=") for a in args):
    args = ["--config=experiments/digits.py:small", *args]
  out = _train_cli(*args)
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1, out.stderr
  assert lines[0].startswith("error: ") and message in lines[0], lines[0]


def test_cli_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("a regular file: nothing can be created under it, even by root")
  out = _train_cli("--config=experiments/digits.py:small", workdir=str(blocker / "run"))
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      f"error: workdir '{blocker / 'run'}' is not writable (Not a directory); choose "
      "another --workdir or make it writable"]


def test_burda_protocol_learning_rates_and_epochs():
  """Burda et al. 2016: 3^i epochs at 1e-3 · 10^(-i/7), i = 0..7 (3,280 epochs)."""
  from vae_jax import train
  c = cli.load_config_file(os.path.join(ROOT, "experiments", "iwae_burda.py:iwae,k=5"))
  config_lib.validate(c)
  assert (c.objective.name, c.objective.num_samples, c.train.batch_size) == ("iwae", 5, 20)
  assert c.train.num_epochs == 3280 and c.optimizer.adam_eps == 1e-4
  steps_per_epoch = (60_000 - c.data.validation_size) // 20
  schedule = train.learning_rate_schedule(c.optimizer)
  first_epoch = 0
  for i in range(8):
    for epoch in (first_epoch, first_epoch + 3 ** i - 1):  # the stage's first and last epochs
      np.testing.assert_allclose(float(schedule(epoch * steps_per_epoch)),
                                 1e-3 * 10 ** (-i / 7), rtol=1e-5)
    first_epoch += 3 ** i
  assert first_epoch == c.train.num_epochs


def test_fields_added_since_a_run_read_as_their_legacy_value():
  """A recorded config without a field added later (model.output_bias) is not a
  change while today's value reproduces the old behaviour; it is when set to
  something new. The fingerprint agrees with changed_fields."""
  new = config_lib.flatten(config_lib.default())
  old = {k: v for k, v in new.items() if k not in config_lib.LEGACY_DEFAULTS}
  assert config_lib.changed_fields(old, new) == []
  assert config_lib.fingerprint(old) == config_lib.fingerprint(new)
  changed = {**new, "model.output_bias": "data_mean"}
  assert config_lib.changed_fields(old, changed) == ["model.output_bias"]
  assert config_lib.fingerprint(old) != config_lib.fingerprint(changed)
  assert config_lib.fingerprint({**new, "train.progress_bar": False}) == config_lib.fingerprint(new)
  assert config_lib.fingerprint({**new, "model.latent_dim": 3}) != config_lib.fingerprint(new)
