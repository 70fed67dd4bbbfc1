"""One self-contained HTML report of a run: config, numbers with errors, figures.

Figures are embedded as base64 PNG, so the file can be mailed or archived on
its own.
"""

import base64
import html
import json
import os

from vae_jax import runs
from vae_jax.errors import UserError

_FIGURES = ("training_curves", "reconstructions", "samples", "traversals",
            "kl_per_dimension", "kl_per_group", "latent_scatter", "samples_t0.7")


def _row(name: str, s: dict, unit: str = "nats") -> str:
  mc = "n/a" if s.get("mc_err") is None else f"{s['mc_err']:.4f}"
  return (f"<tr><td>{name}</td><td>{s['value']:.4f} {unit}</td><td>{s['se']:.4f}</td>"
          f"<td>{mc}</td><td>{s['bits_per_dim']:.5f}</td></tr>")


def _image(path: str) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode()
  name = os.path.basename(path)[:-4].replace("_", " ")
  return f'<figure><img src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'


def write_report(workdir: str) -> str:
  """Writes DIR/report.html from the run's files; returns its path."""
  config_path = os.path.join(workdir, runs.CONFIG_FILE)
  eval_path = os.path.join(workdir, runs.EVAL_FILE)
  if not os.path.exists(eval_path):
    raise UserError(f"{workdir!r} has no {runs.EVAL_FILE}: the run has not finished; run "
                    "scripts/train.py with the same --workdir first")
  record = runs.read_json(config_path, runs.CONFIG_KEYS)
  result = runs.read_json(eval_path, runs.EVAL_KEYS)
  try:
    return _write(workdir, record, result)
  except (KeyError, TypeError, ValueError, AttributeError) as e:  # whole JSON, damaged inside
    raise runs.DamagedFile(f"{eval_path} is damaged (cannot read {e}); restore it, or move it "
                           "aside and rerun the training command, which evaluates again") from None


def _write(workdir: str, record: dict, result: dict) -> str:
  test = result["test"]
  parts = [
      "<!doctype html><meta charset='utf-8'><title>vae_jax run</title>",
      "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
      "td,th{padding:2px 10px;text-align:right}td:first-child{text-align:left}"
      "img{max-width:100%;image-rendering:pixelated}figure{display:inline-block}</style>",
      f"<h1>{html.escape(os.path.abspath(workdir))}</h1>",
      f"<p>{result['split']} split, {test['num_examples']} examples, {result['checkpoint']} "
      f"checkpoint at step {result['step']} ({result.get('params', 'raw')} parameters).</p>",
      "<h2>Results</h2><table><tr><th></th><th>estimate</th><th>± across examples</th>"
      "<th>± Monte Carlo</th><th>bits/dim</th></tr>",
      _row(f"ELBO ({test['elbo_samples']} z per example)", test["elbo"]),
  ]
  if "nll" in test:
    parts.append(_row(f"NLL, importance-sampled k={test['num_importance_samples']}",
                      test["nll"]))
  parts.append("</table>")
  if "mutual_information" in test:
    parts.append(f"<p>rate {test['rate']:.4f} nats = mutual information "
                 f"{test['mutual_information']:.4f} (estimable up to log N = "
                 f"{test['mutual_information_ceiling']:.3f}) + marginal KL "
                 f"{test['marginal_kl']:.4f}; distortion {test['distortion']:.4f} nats; "
                 f"{test['active_units']} of {len(test['kl_per_dim'])} units active.</p>")
  else:
    from vae_jax.evaluation import group_table  # deferred: JAX
    parts.append(f"<p>rate {test['rate']:.4f} nats; distortion {test['distortion']:.4f} "
                 "nats. Per latent group (MI under the posterior with the groups above at "
                 "their means):</p><pre>" + html.escape("\n".join(group_table(test["groups"])))
                 + "</pre>")
  for section in ("gaps", "linear_gaussian"):
    if section in test:
      rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.5g}</td></tr>"
                     if isinstance(v, float) else f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
                     for k, v in test[section].items())
      parts.append(f"<h2>{section.replace('_', ' ')}</h2><table>{rows}</table>")
  parts.append("<h2>Figures</h2>")
  for name in _FIGURES:
    path = os.path.join(workdir, "images", f"{name}.png")
    if os.path.exists(path):
      parts.append(_image(path))
  parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(record["config"], indent=1))
               + "</pre><h2>Provenance</h2><pre>"
               + html.escape(json.dumps(result.get("provenance", {}), indent=1)) + "</pre>")
  path = os.path.join(workdir, "report.html")
  from vae_jax import writers
  writers.atomic_write_text(path, "\n".join(parts) + "\n")
  return path
