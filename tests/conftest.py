"""Shared fixtures: configs in their small form, a linear-Gaussian model."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vae_jax import cli  # noqa: E402


def experiment(name: str, arg: str | None = "small"):
  spec = os.path.join(ROOT, "experiments", f"{name}.py") + (f":{arg}" if arg else "")
  config = cli.load_config_file(spec)
  config.train.progress_bar = False
  return config


@pytest.fixture
def digits_config():
  return experiment("digits")
