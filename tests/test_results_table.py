"""The results table (vae_jax/results_table.py, scripts/results.py): its rows
carry the run's own figures, say "not run" or "stale" instead of a number
that does not stand, and its experiments name what they reproduce."""

import csv
import json
import os
import subprocess
import sys

import pytest

from vae_jax import cli, results_table, train
from vae_jax.results_table import Row

from conftest import ROOT

DIGITS = "experiments/digits.py:small"
REQUIRED_COLUMNS = ("config", "command", "dataset", "nll", "nll_se", "bits_per_dim",
                    "train_minutes", "epochs", "hardware", "reference", "reference_nll")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
  """One finished digits row, trained by the config its Row builds."""
  runs = str(tmp_path_factory.mktemp("runs"))
  row = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),))
  config = row.experiment_config()
  config.train.progress_bar = False
  train.train_and_evaluate(config, os.path.join(runs, "digits"))
  return runs


def _eval(runs_dir):
  with open(os.path.join(runs_dir, "digits", "eval.json")) as f:
    return json.load(f)


def test_a_finished_row_carries_its_runs_figures(runs_dir):
  row = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),))
  r = results_table.gather_row(row, runs_dir)
  e = _eval(runs_dir)
  with open(os.path.join(runs_dir, "digits", "config.json")) as f:
    record = json.load(f)
  assert r["status"] == "finished"
  assert r["test_examples"] == e["test"]["num_examples"] == 6  # eval.test_examples
  assert r["nll"] == round(e["test"]["nll"]["value"], 3)
  assert r["nll_se"] == round(e["test"]["nll"]["se"], 3)
  assert r["bits_per_dim"] == round(e["test"]["nll"]["bits_per_dim"], 4)
  assert r["steps"] == record["total_steps"] == 40
  assert r["epochs"] == round(40 * 64 / record["num_train_examples"], 1)
  assert 0 < e["train_seconds"] and r["train_minutes"] == round(e["train_seconds"] / 60, 1)
  assert r["hardware"].startswith("CPU, ")
  assert r["reference_nll"] == "" and r["difference"] == ""  # digits names no paper


def test_a_row_without_a_monte_carlo_error_is_drawn(runs_dir):
  """k = 1 gives no Monte Carlo error, one test image no standard error: the
  table shows the rest."""
  row = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),))
  r = results_table.gather_row(row, runs_dir)
  r["nll_mc_err"] = ""
  assert f"| {r['nll']:.2f} ± {r['nll_se']:.2f} |" in results_table.to_markdown([r], runs_dir)
  r["nll_se"] = ""
  assert f"| {r['nll']:.2f} |" in results_table.to_markdown([r], runs_dir)


def test_a_reference_gives_the_difference_and_does_not_make_the_run_stale(runs_dir):
  row = Row("digits", "1", "digits", DIGITS,
            (("eval.test_examples", 6), ("reference.nll", 90.0)))
  r = results_table.gather_row(row, runs_dir)
  assert r["status"] == "finished"
  assert r["difference"] == round(_eval(runs_dir)["test"]["nll"]["value"] - 90.0, 2)


@pytest.mark.parametrize("override", [("model.latent_dim", 3), ("eval.test_examples", 7)])
def test_a_run_of_another_config_is_stale_and_shows_no_number(runs_dir, override):
  row = Row("digits", "1", "digits", DIGITS, (override,))
  r = results_table.gather_row(row, runs_dir)
  assert r["status"].startswith("stale") and override[0] in r["status"]
  assert r["nll"] == "" and r["train_minutes"] == ""


def test_rows_not_run_say_so_and_the_files_read_back(runs_dir, tmp_path):
  rows = [Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),)),
          Row("never", "2", "never run", DIGITS),
          Row("protocol", "3", "a GPU protocol", DIGITS, needs="gpu")]
  table = results_table.gather(rows, runs_dir)
  assert [r["status"] for r in table] == ["finished", "not run", "not run: needs a GPU"]
  assert table[1]["nll"] == "" and table[2]["nll"] == ""
  assert "--config.backend=gpu" in table[2]["command"]
  md, csv_path = results_table.write(table, str(tmp_path / "docs"), runs_dir)
  with open(csv_path, newline="") as f:
    read = list(csv.DictReader(f))
  assert set(REQUIRED_COLUMNS) <= set(read[0])
  assert float(read[0]["nll"]) == table[0]["nll"] and read[1]["nll"] == ""
  assert float(read[0]["train_minutes"]) >= 0 and float(read[0]["epochs"]) > 0
  text = open(md).read()
  assert f"{table[0]['nll']:.2f} ± {table[0]['nll_se']:.2f}" in text
  assert "not run: needs a GPU" in text and table[0]["command"] in text


def test_a_measured_row_is_kept_when_its_run_is_gone_and_its_config_unchanged(runs_dir,
                                                                               tmp_path):
  """The table written from a run, read back, keeps that row's figures once the
  run is gone, while its config is the same (config_sha); a row whose config
  changed since, or --nokeep, says 'not run' instead."""
  row = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),))
  measured = results_table.gather([row], runs_dir)
  _, csv_path = results_table.write(measured, str(tmp_path / "docs"), runs_dir)
  previous = results_table.read_csv(csv_path)
  gone = str(tmp_path / "no_runs")
  kept = results_table.gather([row], gone, previous=previous)[0]
  for k in ("status", "nll", "nll_se", "nll_mc_err", "bits_per_dim", "steps", "test_examples",
            "train_minutes", "hardware", "config_sha"):
    assert kept[k] == measured[0][k], k
  assert kept["source"].startswith("kept from the previous table")
  assert "measured (kept)" in results_table.to_markdown([kept], gone)
  changed = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),
                                                  ("model.latent_dim", 3)))
  assert results_table.gather([changed], gone, previous=previous)[0]["status"] == "not run"
  assert results_table.gather([row], gone)[0]["status"] == "not run"
  # A reference changed since does not make it stale: the difference follows it.
  cited = Row("digits", "1", "digits", DIGITS, (("eval.test_examples", 6),
                                                ("reference.nll", 90.0)))
  r = results_table.gather([cited], gone, previous=previous)[0]
  assert r["status"] == "finished" and r["difference"] == round(kept["nll"] - 90.0, 2)


def test_the_shipped_rows_load_and_name_their_reference():
  rows = cli.load_module(os.path.join(ROOT, "experiments", "results_table.py")).ROWS
  assert len({r.id for r in rows}) == len(rows)
  for row in rows:
    c = row.experiment_config()
    assert c.reference.source and c.reference.differences, row.id
    if row.config.startswith(("experiments/iwae_burda.py", "experiments/iwae_two_layer.py")):
      assert c.reference.nll is not None and c.eval.num_importance_samples == 5000
  published = {r.id: r.experiment_config().reference.nll for r in rows}
  assert published["iwae1_vae"] == 86.76 and published["iwae2_vae"] == 85.33
  assert published["iwae2_iwae50_protocol"] == 82.90


def test_the_iwae_schedule_compressed_into_a_budget():
  full = cli.load_config_file(os.path.join(ROOT, "experiments", "iwae_burda.py:vae,k=1"))
  per_epoch = 59_000 // 20
  assert full.optimizer.boundaries == tuple(sum(3 ** j for j in range(i + 1)) * per_epoch
                                            for i in range(7))
  short = cli.load_config_file(os.path.join(ROOT, "experiments",
                                            "iwae_burda.py:vae,k=1,epochs=40,batch=100"))
  b = short.optimizer.boundaries
  assert short.train.num_epochs == 40 and short.train.batch_size == 100
  assert all(x < y for x, y in zip(b, b[1:]))
  assert abs(b[-1] / (40 * (59_000 // 100)) - 1093 / 3280) < 1e-3  # the last stage's share


def test_the_script_writes_a_table_of_unrun_rows(tmp_path):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "results.py"),
                        f"--runs={tmp_path / 'runs'}", f"--out={tmp_path / 'docs'}"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  assert "0 of" in out.stdout
  text = (tmp_path / "docs" / "results.md").read_text()
  assert text.count("not run: needs a GPU") >= 3 and "| 3 |" in text


def test_the_iwae_two_layer_model_has_the_papers_layers():
  """The paper's code (yburda/iwae experiments.py, layers=2): latent units
  [100, 50], q's hidden units [[200, 200], [100, 100]], p's [[100, 100],
  [200, 200]], each Gaussian layer's last dense emitting mean and scale."""
  import jax

  from vae_jax import data, models
  c = cli.load_config_file(os.path.join(ROOT, "experiments", "iwae_two_layer.py:iwae,k=5"))
  m = models.build(c.model, data.DataSpec((28, 28, 1), 2))
  p = jax.eval_shape(m.init, jax.random.key(0))
  dense = lambda t: [t[n]["kernel"].shape for n in ("hidden_0", "hidden_1", "output")]
  assert dense(p["encoder"]["x"]) == [(784, 200), (200, 200), (200, 2 * 100)]
  assert dense(p["encoder"]["up_0"]) == [(100, 100), (100, 100), (100, 2 * 50)]
  assert dense(p["decoder"]["down_0"]) == [(50, 100), (100, 100), (100, 2 * 100)]
  assert dense(p["decoder"]["x"]) == [(100, 200), (200, 200), (200, 784)]
