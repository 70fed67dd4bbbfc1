"""vae_jax: variational autoencoders as pure JAX functions of a parameter pytree."""

__version__ = "0.1.0"


def load_run(workdir):
  """Loads a finished or running experiment; see `vae_jax.runs.load_run`."""
  from vae_jax import runs  # Deferred: keeps `import vae_jax` free of JAX work.
  return runs.load_run(workdir)
