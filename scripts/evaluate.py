"""Re-evaluates a run's checkpoint: ELBO and importance-sampled log-likelihood.

  python scripts/evaluate.py --workdir=runs/digits --num_samples=5000

Prints each estimate with its standard error across examples and its Monte
Carlo error, and writes DIR/eval_<split>_<checkpoint>_k<k>.json; the eval.json
written by training stays as it is.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a training run.", required=True)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", None,
                                    "Importance samples k (default: the run's eval config).",
                                    lower_bound=1)
_CHUNK = flags.DEFINE_integer("chunk", None, "Samples per streamed chunk (bounds memory).",
                              lower_bound=1)
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation"], "Which split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the Monte Carlo draws.", lower_bound=0)
_GAPS = flags.DEFINE_integer("gap_examples", None,
                             "Examples for the approximation/amortisation gaps (0: none).",
                             lower_bound=0)
_LIMIT = flags.DEFINE_integer("num_examples", None, "Evaluate only the first N examples.",
                              lower_bound=1)


def main(argv):
  del argv
  from vae_jax import evaluation  # Deferred: flags first, then JAX.
  from vae_jax.errors import WriteError
  try:
    print(evaluation.evaluate_run(_WORKDIR.value, split=_SPLIT.value,
                                  checkpoint=_CHECKPOINT.value,
                                  num_importance_samples=_NUM_SAMPLES.value,
                                  chunk=_CHUNK.value, seed=_SEED.value,
                                  gap_examples=_GAPS.value, num_examples=_LIMIT.value))
  except WriteError as e:  # it writes only its own eval_*.json
    raise e.with_intact(f"the run in {_WORKDIR.value} is unchanged") from None


if __name__ == "__main__":
  cli.run(main)
