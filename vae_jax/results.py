"""A sweep's results: one row per member, mean ± std over seeds, and plots.

  DIR/results.csv          one row per member: swept values, test figures,
                           status, wall time
  DIR/results.md           the same, and (seeds swept) mean ± std over seeds
  DIR/results_<y>_vs_<x>.png   a figure against a swept value, error bars over seeds
"""

import csv
import io
import math
import os
import warnings
from typing import Any

import numpy as np

from vae_jax import config as config_lib
from vae_jax import runs, writers
from vae_jax.launch import member_dir, read_status
from vae_jax.sweeps import Sweep

METRICS = ("test_elbo", "test_nll", "test_nll_bits_per_dim", "test_rate", "test_distortion",
           "test_active_units", "test_grad_encoder_variance", "test_grad_encoder_snr",
           "test_grad_decoder_variance", "test_grad_decoder_snr",
           "test_grad_encoder_variance_mc_over_analytic_kl")


def _figures(evaluation: dict | None) -> dict[str, float]:
  if evaluation is None:
    return dict.fromkeys(METRICS, math.nan)
  t = evaluation["test"]
  g = t.get("gradient", {})  # with eval.gradient_draws > 0
  return {**{f"test_grad_{k}": g.get(k, math.nan) for k in (
              "encoder_variance", "encoder_snr", "decoder_variance", "decoder_snr",
              "encoder_variance_mc_over_analytic_kl")},
          "test_elbo": t["elbo"]["value"],
          "test_nll": t["nll"]["value"] if "nll" in t else math.nan,
          "test_nll_bits_per_dim": t["nll"]["bits_per_dim"] if "nll" in t else math.nan,
          "test_rate": t["rate"], "test_distortion": t["distortion"],
          "test_active_units": t["active_units"]}


def collect(sweep: Sweep, workdir: str) -> list[dict[str, Any]]:
  """One row per member, in sweep order: name, swept values, figures, status,
  error, wall seconds."""
  rows = []
  for i, name in enumerate(sweep.names):
    run_dir = member_dir(workdir, sweep, i)
    status = read_status(run_dir)
    eval_path = os.path.join(run_dir, runs.EVAL_FILE)
    evaluation = runs.read_eval(eval_path)  # None if damaged
    try:
      figures = _figures(evaluation)
    except (KeyError, TypeError, AttributeError):  # whole JSON, damaged inside
      warnings.warn(f"{eval_path} is damaged (its figures cannot be read); the member's row "
                    "is left empty", stacklevel=2)
      figures = _figures(None)
    row = {"name": name, **{k: sweep.members[i].get(k) for k in sweep.swept_keys()},
           **figures, "status": status["status"], "error": status.get("error"),
           "seconds": round(status.get("seconds", 0.0), 1)}
    rows.append(row)
  return rows


def aggregate(rows: list[dict], keys: list[str], seed_key: str = "seed") -> list[dict]:
  """Rows grouped by every swept key but the seed: each figure's mean, std
  (ddof=1) and the number of finished seeds; unfinished members are left out."""
  group_keys = [k for k in keys if k != seed_key]
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(tuple(_hashable(row[k]) for k in group_keys), []).append(row)
  out = []
  for values, members in groups.items():
    done = [m for m in members if m["status"] == "finished"]
    agg = dict(zip(group_keys, values))
    agg["seeds"] = len(done)
    for metric in METRICS:
      x = np.array([m[metric] for m in done], float)
      agg[metric] = float(np.mean(x)) if len(x) else math.nan
      agg[f"{metric}_std"] = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
    agg["seconds"] = round(sum(m["seconds"] for m in members), 1)
    out.append(agg)
  return out


def _hashable(value):
  return config_lib.as_config_value(value)


def _fmt(value) -> str:
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.3f}"
  return "" if value is None else str(value)


def _markdown(columns: list[str], rows: list[dict], keys: tuple[str, ...] = ()) -> str:
  """A table; the swept `keys` columns show their values exactly (a learning
  rate of 3e-4 is not 0.000), the figures to three decimals."""
  shown = lambda c, v: str(v) if c in keys and isinstance(v, float) else _fmt(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(shown(c, r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


def write_tables(sweep: Sweep, workdir: str, rows: list[dict] | None = None
                 ) -> tuple[str, str]:
  """Writes results.csv and results.md (of `rows`, else `collect`ed); returns
  their paths."""
  rows = collect(sweep, workdir) if rows is None else rows
  keys = sweep.swept_keys()
  metrics = [m for m in METRICS  # the gradient figures only where measured
             if not m.startswith("test_grad") or any(np.isfinite(r[m]) for r in rows)]
  columns = ["name", *keys, *metrics, "status", "seconds", "error"]
  text = io.StringIO()
  w = csv.DictWriter(text, columns, lineterminator="\n")
  w.writeheader()
  for row in rows:
    w.writerow({c: row.get(c) for c in columns})
  csv_path = os.path.join(workdir, "results.csv")
  writers.atomic_write_text(csv_path, text.getvalue())
  t, e = sweep.base.train, sweep.base.eval
  budget = (f"{t.num_steps} steps" if t.num_steps is not None else f"{t.num_epochs} epochs")
  md = [f"# {sweep.spec}", "", *([sweep.note, ""] if sweep.note else []),
        f"Budget of each member: {budget} of batch {t.batch_size} on data.name="
        f"{sweep.base.data.name}; test NLL by importance sampling with k = "
        f"{e.num_importance_samples}. Seconds: wall time (a vectorised member's share of its "
        "group's).", "", _markdown(columns, rows, tuple(keys))]
  if "seed" in keys:
    agg = aggregate(rows, keys)
    group_keys = [k for k in keys if k != "seed"]
    for a in agg:
      for metric in metrics:
        a[f"{metric} (mean ± std)"] = (f"{a[metric]:.3f} ± {a[f'{metric}_std']:.3f}"
                                       if not math.isnan(a[f"{metric}_std"])
                                       else _fmt(a[metric]))
    md += ["", f"Mean ± std (ddof=1) over seeds ({', '.join(group_keys) or 'all members'}):",
           "", _markdown([*group_keys, "seeds", *(f"{m} (mean ± std)" for m in metrics),
                          "seconds"], agg, tuple(group_keys))]
  md_path = os.path.join(workdir, "results.md")
  writers.atomic_write_text(md_path, "\n".join(md) + "\n")
  return csv_path, md_path


def plot(sweep: Sweep, workdir: str, x: str, y: str, along: str | None = None,
         log_x: bool = False, rows: list[dict] | None = None) -> str:
  """`y` (a figure) against `x` (a swept key, or a figure with the curve
  running `along` a swept key, as a rate-distortion curve runs along β); one
  line per value of the other swept keys, mean and std over seeds; returns the
  PNG path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = sweep.swept_keys()
  rows = collect(sweep, workdir) if rows is None else rows
  agg = [a for a in aggregate(rows, keys) if a["seeds"]]
  lines: dict[tuple, list[dict]] = {}
  along = along or x
  others = [k for k in keys if k not in ("seed", along)]
  for a in agg:
    lines.setdefault(tuple((k, a[k]) for k in others), []).append(a)
  fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
  for label, points in lines.items():
    points.sort(key=lambda a: a[along])
    xs = [a[x] for a in points]
    if not all(isinstance(v, (int, float)) for v in xs):  # categorical: 'analytic', 'mc'
      xs = [str(v) for v in xs]
    xerr = [a[f"{x}_std"] for a in points] if x in METRICS else None
    yerr = [a[f"{y}_std"] for a in points]
    clean = lambda e: None if e is None or all(math.isnan(v) for v in e) else \
        np.nan_to_num(np.array(e, float))
    ax.errorbar(xs, [a[y] for a in points], yerr=clean(yerr), xerr=clean(xerr), marker="o",
                capsize=3, label=", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in label)
                or None)
    if along != x:  # name each point of a curve by the swept value it runs along
      for a, xv in zip(points, xs):
        v = f"{a[along]:g}" if isinstance(a[along], (int, float)) else a[along]
        ax.annotate(f"{along.rsplit('.', 1)[-1]}={v}", (xv, a[y]), fontsize=6,
                    textcoords="offset points", xytext=(4, 4))
  if log_x:
    ax.set_xscale("log")
  ax.set_xlabel(x)
  ax.set_ylabel(y)
  if any(label for label in lines):
    ax.legend(fontsize=7)
  ax.set_title(f"{os.path.basename(sweep.spec)}: mean ± std over seeds", fontsize=8)
  fig.tight_layout()
  path = os.path.join(workdir, f"results_{y}_vs_{x.rsplit('.', 1)[-1]}.png")
  with writers.writing(path):
    fig.savefig(path)
  plt.close(fig)
  return path
