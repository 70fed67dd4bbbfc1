"""The results table: finished runs of named experiments, set beside the
published numbers they reproduce or set out to beat (scripts/results.py).

A `Row` names an experiment file with its argument and the config overrides of
its command; `experiments/results_table.py` lists the table's rows. `gather`
reads each row's run in RUNS/<row id>: its eval.json (test NLL with its errors),
config.json (the budget) and the experiment's `config.reference`. A row whose
run is missing says "not run" (and, for a GPU protocol on a CPU, why); a run
whose recorded config no longer matches the experiment's says "stale" and shows
no number. `write` puts the rows in results.md and results.csv.
"""

import csv
import dataclasses
import datetime
import io
import math
import os
import shlex
from typing import Any

import ml_collections

from vae_jax import cli, runs, sweeps, writers
from vae_jax import config as config_lib

# Fields that do not change a run's numbers: a run that differs from today's
# experiment only in these still stands for it.
_NOT_A_CHANGE = ("reference.", "train.progress_bar", "train.keep_checkpoints", "eval.figures",
                 "eval.num_images", "backend")

CSV_COLUMNS = ("row", "id", "title", "config", "command", "dataset", "test_protocol",
               "status", "nll", "nll_se", "nll_mc_err", "elbo", "bits_per_dim",
               "num_importance_samples", "test_examples", "train_minutes", "eval_minutes",
               "epochs", "steps", "batch_size", "hardware", "reference", "reference_nll",
               "reference_bits_per_dim", "difference", "differences", "config_sha", "source")

# What a row's run measured: kept from the previous table when the run itself
# is gone but the row's config is unchanged (the same config_sha).
_MEASURED = ("dataset", "test_protocol", "status", "nll", "nll_se", "nll_mc_err", "elbo",
             "bits_per_dim", "num_importance_samples", "test_examples", "train_minutes",
             "eval_minutes", "epochs", "steps", "hardware")
_NUMERIC = ("nll", "nll_se", "nll_mc_err", "elbo", "bits_per_dim", "num_importance_samples",
            "test_examples", "train_minutes", "eval_minutes", "epochs", "steps", "batch_size",
            "reference_nll", "reference_bits_per_dim", "difference")


@dataclasses.dataclass(frozen=True)
class Row:
  id: str  # the run's folder under the runs directory
  row: str  # its place in the table ("3", "4b")
  title: str
  config: str  # experiments/FILE.py[:arg]
  overrides: tuple[tuple[str, Any], ...] = ()  # (dotted field, value): --config.field=value
  needs: str = "cpu"  # cpu | gpu: the backend its budget is meant for

  def experiment_config(self) -> ml_collections.ConfigDict:
    """The config its command trains today: the file's, with the overrides."""
    c = sweeps.apply(cli.load_config_file(self.config), dict(self.overrides))
    if self.needs == "gpu":
      c.backend = "gpu"
    return c

  def command(self, runs_dir: str) -> str:
    args = [f"--config={self.config}", f"--workdir={os.path.join(runs_dir, self.id)}"]
    args += [f"--config.{k}={v}" for k, v in self.overrides]
    if self.needs == "gpu":
      args.append("--config.backend=gpu")
    return "python scripts/train.py " + " ".join(shlex.quote(a) for a in args)


def _dataset(c: ml_collections.ConfigDict, record: dict | None) -> str:
  d = c.data
  source = os.path.basename(d.path) if d.name == "npz" and d.path else d.name
  text = f"{source}, binarisation {d.binarize}" if d.binarize != "none" else source
  if record is not None:
    text += (f"; {record['num_train_examples']:,} train, {d.validation_size:,} validation, "
             f"{d.test_size:,} test")
  return text


def _hardware(evaluation: dict) -> str:
  p = evaluation.get("provenance", {})
  if p.get("platform") == "cpu":
    return f"CPU, {p.get('cpu_count')} cores"
  return f"{p.get('device_count', 1)} × {p.get('device_kind')}"


def _number(x: Any, digits: int) -> Any:
  return "" if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def gather_row(row: Row, runs_dir: str, backend: str = "cpu") -> dict[str, Any]:
  """One row of the table: the experiment and its reference, and the run's
  figures when a finished run of today's config is in RUNS/<id>."""
  c = row.experiment_config()
  ref = c.reference
  run_dir = os.path.join(runs_dir, row.id)
  out = {k: "" for k in CSV_COLUMNS}
  out.update(row=row.row, id=row.id, title=row.title, config=row.config,
             command=row.command(runs_dir), dataset=_dataset(c, None),
             reference=" — ".join(p for p in (ref.source, ref.table) if p),
             reference_nll=_number(ref.nll, 2), reference_bits_per_dim=_number(ref.bits_per_dim, 3),
             differences=ref.differences, batch_size=c.train.batch_size,
             config_sha=config_lib.fingerprint(config_lib.flatten(c), _NOT_A_CHANGE))
  evaluation = runs.read_eval(os.path.join(run_dir, runs.EVAL_FILE))
  if evaluation is None:
    out["status"] = ("not run: needs a GPU" if row.needs == "gpu" and backend != "gpu"
                     else "not run")
    return out
  try:
    record = runs.read_json(os.path.join(run_dir, runs.CONFIG_FILE), runs.CONFIG_KEYS)
  except (runs.DamagedFile, OSError) as e:
    out["status"] = f"not run: {e}"
    return out
  stale = config_lib.changed_fields(runs.flatten_dict(record["config"]), config_lib.flatten(c),
                                    ignore=_NOT_A_CHANGE)
  if stale:
    out["status"] = (f"stale: the run's config differs from the experiment's in "
                     f"{', '.join(stale[:4])}{' …' if len(stale) > 4 else ''}; rerun the command")
    return out
  t = evaluation["test"]
  nll = t.get("nll", {})
  steps = record["total_steps"]
  train_seconds = evaluation.get("train_seconds")
  out.update(
      status="finished", dataset=_dataset(c, record),
      test_protocol=(f"importance sampling, k={t.get('num_importance_samples')}, "
                     f"{t['num_examples']:,} test images, checkpoint of step "
                     f"{evaluation['step']:,} "
                     + ("(best validation ELBO)" if evaluation.get("checkpoint", "best") == "best"
                        else f"({evaluation['checkpoint']})")),
      nll=_number(nll.get("value"), 3), nll_se=_number(nll.get("se"), 3),
      nll_mc_err=_number(nll.get("mc_err"), 4), elbo=_number(t["elbo"]["value"], 3),
      bits_per_dim=_number(nll.get("bits_per_dim"), 4),
      num_importance_samples=t.get("num_importance_samples", ""),
      test_examples=t["num_examples"],
      train_minutes=_number(None if train_seconds is None else train_seconds / 60, 1),
      eval_minutes=_number(evaluation.get("eval_seconds", 0) / 60 or None, 1),
      epochs=_number(steps * c.train.batch_size / record["num_train_examples"], 1),
      steps=steps, hardware=_hardware(evaluation), source=run_dir)
  _difference(out, ref.nll, ref.bits_per_dim, nll.get("value"), nll.get("bits_per_dim"))
  return out


def _difference(out: dict[str, Any], ref_nll, ref_bpd, nll, bpd) -> None:
  """Our figure minus the published one, nats (or bits/dim where that is published)."""
  if ref_nll not in (None, "") and nll not in (None, ""):
    out["difference"] = _number(nll - ref_nll, 2)
  elif ref_bpd not in (None, "") and bpd not in (None, ""):
    out["difference"] = _number(bpd - ref_bpd, 3)


def gather(rows: list[Row], runs_dir: str, backend: str = "cpu",
           previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
  """Every row from its run; a row whose run is absent keeps its figures from
  `previous` (an earlier results.csv, `read_csv`) where that row was measured
  from the config it has today (the same config_sha), and says so."""
  before = {r["id"]: r for r in previous or [] if r.get("status") == "finished"}
  table = []
  for row in rows:
    out = gather_row(row, runs_dir, backend)
    old = before.get(row.id)
    if (out["status"].startswith("not run") and old is not None
        and old.get("config_sha") == out["config_sha"]):
      out.update({k: old.get(k, "") for k in _MEASURED})
      source = old.get("source") or "an earlier table"
      out["source"] = (source if is_kept(old)
                       else f"kept from the previous table (measured in {source})")
      _difference(out, out["reference_nll"], out["reference_bits_per_dim"], out["nll"],
                  out["bits_per_dim"])
    table.append(out)
  return table


def is_kept(r: dict[str, Any]) -> bool:
  """Whether a row's figures come from an earlier table, not from its run."""
  return r.get("source", "").startswith("kept from")


def read_csv(path: str) -> list[dict[str, Any]]:
  """A results.csv as written by `write`, numbers as numbers."""
  with open(path, newline="") as f:
    table = list(csv.DictReader(f))
  for r in table:
    for k in _NUMERIC:
      v = r.get(k, "")
      if v not in ("", None):
        r[k] = float(v) if any(ch in v for ch in ".eE") or v in ("nan", "inf") else int(v)
  return table


def to_csv(table: list[dict[str, Any]]) -> str:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
  w.writeheader()
  w.writerows(table)
  return buf.getvalue()


def _cell(x: Any) -> str:
  return str(x).replace("|", "\\|") if x != "" else "—"


def to_markdown(table: list[dict[str, Any]], runs_dir: str, intro: str = "") -> str:
  lines = ["# Results", "",
           f"Generated by `python scripts/results.py --runs={runs_dir}` on "
           f"{datetime.date.today().isoformat()} from the runs it names; do not edit by hand. "
           "Every figure is measured by this project: test NLL in nats by importance sampling, "
           "± its standard error across test images, [its Monte Carlo error]. Δ is our NLL "
           "minus the published one (negative: better), across different protocols where the "
           "row says so.", ""]
  if intro:
    lines += [intro, ""]
  lines += ["| # | experiment | test NLL (nats) | k, test images | bits/dim | published | Δ | "
            "train min | epochs | hardware | status |", "|" + "---|" * 11]
  for r in table:
    mc = f" [{r['nll_mc_err']:.3f}]" if r["nll_mc_err"] not in ("", None) else ""
    se = f" ± {r['nll_se']:.2f}" if r["nll_se"] not in ("", None) else ""  # none: 1 example
    nll = f"{r['nll']:.2f}{se}{mc}" if r["nll"] != "" else ""
    published = r["reference_nll"] if r["reference_nll"] != "" else r["reference_bits_per_dim"]
    status = r["status"] if r["status"] != "finished" else (
        "measured (kept)" if is_kept(r) else "measured")
    protocol = (f"{r['num_importance_samples']}, {r['test_examples']:,}" if r["nll"] != ""
                else "")
    lines.append("| " + " | ".join(_cell(x) for x in (
        r["row"], r["title"], nll, protocol, r["bits_per_dim"], published, r["difference"],
        r["train_minutes"], r["epochs"], r["hardware"], status)) + " |")
  lines += ["", "## Rows", ""]
  for r in table:
    lines += [f"### {r['row']}. {r['title']}", "",
              f"- config: `{r['config']}`", f"- command: `{r['command']}`",
              f"- data: {r['dataset']}"]
    if r["test_protocol"]:
      lines.append(f"- test: {r['test_protocol']}")
    if r["nll"] != "":
      lines.append(f"- test ELBO {r['elbo']} nats; {r['steps']:,} steps of batch "
                   f"{r['batch_size']} ({r['epochs']} epochs) in {r['train_minutes']} "
                   f"minutes on {r['hardware']}; evaluation {r['eval_minutes']} minutes")
    lines.append(f"- published: {r['reference'] or 'none'}"
                 + (f" — {r['reference_nll']} nats" if r["reference_nll"] != "" else ""))
    if r["differences"]:
      lines.append(f"- how the protocol differs: {r['differences']}")
    lines.append(f"- status: {r['status']}"
                 + (f"; {r['source']}, its config unchanged (config_sha {r['config_sha']})"
                    if is_kept(r) else ""))
    lines.append("")
  return "\n".join(lines)


def write(table: list[dict[str, Any]], out_dir: str, runs_dir: str, intro: str = ""
          ) -> tuple[str, str]:
  """results.md and results.csv in `out_dir`, each written whole or not at all."""
  md, csv_path = os.path.join(out_dir, "results.md"), os.path.join(out_dir, "results.csv")
  with writers.writing(out_dir):
    os.makedirs(out_dir, exist_ok=True)
  writers.atomic_write_text(md, to_markdown(table, runs_dir, intro) + "\n")
  writers.atomic_write_text(csv_path, to_csv(table))
  return md, csv_path
