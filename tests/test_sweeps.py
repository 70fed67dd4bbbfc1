"""Sweeps: declaring, naming, launching, resuming, isolating failures,
vectorising, collecting; and every shipped ablation in its small form."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from vae_jax import launch, results, runs, sweeps
from vae_jax.errors import UserError
from vae_jax.sweeps import product, sweep, zip_

from conftest import ROOT, patch_nan_gradient_at, signal_at_dispatch

ABLATIONS = ("beta", "latent_size", "iwae_k", "warmup_free_bits", "kl_estimator", "estimator",
             "prior_posterior")


def _sweep_file(tmp_path, members: str, base: str = 'sweeps.experiment("digits", "small")',
                name: str = "s.py") -> str:
  path = tmp_path / name
  path.write_text("from vae_jax import sweeps\nfrom vae_jax.sweeps import product, sweep, zip_"
                  f"\n\ndef get_config(arg=None):\n  return {base}\n\n"
                  f"def get_sweep(arg=None):\n  return {members}\n")
  return str(path)


def _cli(script: str, *args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), *args],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_product_zip_and_concatenation():
  a, b = sweep("objective.beta", [0.5, 2.0]), sweep("seed", [0, 1, 2])
  assert product(a, b) == [{"objective.beta": x, "seed": s} for x in (0.5, 2.0)
                           for s in (0, 1, 2)]
  assert zip_(sweep("seed", [0, 1]), sweep("model.latent_dim", [4, 8])) == [
      {"seed": 0, "model.latent_dim": 4}, {"seed": 1, "model.latent_dim": 8}]
  assert a + sweep("seed", [7]) == [{"objective.beta": 0.5}, {"objective.beta": 2.0},
                                    {"seed": 7}]
  with pytest.raises(UserError, match=r"lengths \[2, 3\]"):
    zip_(a, b)


def test_names_are_readable_stable_and_unique():
  members = product(sweep("objective.beta", [0.1, 1.0]), sweep("seed", [0, 1]))
  assert sweeps.names(members) == ["beta=0.1,seed=0", "beta=0.1,seed=1", "beta=1,seed=0",
                                   "beta=1,seed=1"]
  assert sweeps.names(list(reversed(members))) == list(reversed(sweeps.names(members)))
  # Two keys ending alike keep their full paths; tuples and paths are made safe.
  clash = [{"model.latent_dim": 2, "other.latent_dim": 3, "data.path": "/a b/x.npz"}]
  assert sweeps.names(clash) == ["path=_a_b_x.npz,model.latent_dim=2,other.latent_dim=3"]
  with pytest.raises(UserError, match="the same"):
    sweeps.names([{"seed": 1}, {"seed": 1}])


def test_bad_members_are_one_line_before_anything_runs(tmp_path):
  cases = {'sweep("model.latent_dimm", [2])': "did you mean config.model.latent_dim",
           'sweep("model.latent_dim", ["big"])': "latent_dim='big'",
           'sweep("objective.name", ["iwae"])': "objective.kl=mc",
           'sweep("model.latent_dim", [0])': "model.latent_dim=0"}
  for members, message in cases.items():
    with pytest.raises(UserError, match=message) as e:
      sweeps.Sweep(_sweep_file(tmp_path, members))
    assert "\n" not in str(e.value)
  out = _cli("sweep.py", "--config=experiments/digits.py", f"--workdir={tmp_path / 'w2'}")
  assert out.returncode == 2 and "no get_sweep" in out.stderr.strip().splitlines()[-1]


def test_dry_run_lists_members_and_runs_nothing(tmp_path):
  out = _cli("sweep.py", "--config=experiments/ablations/beta.py:small",
             f"--workdir={tmp_path}", "--dry_run")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0].startswith("10 members") and "beta=0.1,seed=0" in lines[1]
  assert "--config.objective.beta=0.1 --config.seed=0" in lines[1]
  assert os.listdir(tmp_path) == []


def _steps(num_steps: int) -> str:
  return (f'sweeps.apply(sweeps.experiment("digits", "small"), '
          f'{{"train.num_steps": {num_steps}}})')


def test_sweep_runs_skips_finished_resumes_unfinished_and_isolates_failures(tmp_path):
  """Three members, one diverging (learning rate 1e9): the others finish and
  the failure is recorded with its error; a second launch skips the finished
  ones; a member cut off at step 20 resumes there and ends equal, bit for bit,
  to its uninterrupted twin."""
  spec = _sweep_file(tmp_path, 'sweep("seed", [0, 1]) + [{"optimizer.learning_rate": 1e9}]',
                     _steps(40))
  work = tmp_path / "w"
  # Member 1 is cut off after its step-20 checkpoint (a resumable run, no eval.json).
  cut = _cli("train.py", f"--config={spec}", "--config.sweep_index=1",
             "--config.train.num_steps=20", f"--workdir={work}")
  assert cut.returncode == 0, cut.stderr
  os.remove(work / "seed=1" / "eval.json")
  out = _cli("sweep.py", f"--config={spec}", f"--workdir={work}", "--parallel=2")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith(
      "error: 1 of 3 members did not finish (learning_rate=1e+09)")
  rows = {r["name"]: r for r in results.collect(sweeps.Sweep(spec), str(work))}
  assert rows["seed=0"]["status"] == rows["seed=1"]["status"] == "finished"
  assert rows["learning_rate=1e+09"]["status"] == "failed"
  assert "non-finite" in rows["learning_rate=1e+09"]["error"]
  resumed = runs.load_run(str(work / "seed=1"), "latest")
  assert [r["step"] for r in resumed.metrics] == [10, 20, 30, 40]
  assert launch.read_status(str(work / "seed=1"))["attempts"] == 2
  twin = _cli("train.py", f"--config={spec}", "--config.sweep_index=1",
              f"--workdir={tmp_path / 'twin'}")
  assert twin.returncode == 0, twin.stderr
  uncut = runs.load_run(str(tmp_path / "twin" / "seed=1"), "latest")
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(uncut.params)):
    np.testing.assert_array_equal(a, b)
  # Launched again: the finished members are skipped (their files untouched).
  stamp = os.path.getmtime(work / "seed=0" / "eval.json")
  again = _cli("sweep.py", f"--config={spec}", f"--workdir={work}")
  assert again.returncode == 2
  assert os.path.getmtime(work / "seed=0" / "eval.json") == stamp
  with open(work / "results.csv") as f:
    assert len(f.read().strip().splitlines()) == 4  # header + 3 members


def test_sweep_index_out_of_range_is_one_line(tmp_path):
  spec = _sweep_file(tmp_path, 'sweep("seed", [0, 1])')
  out = _cli("train.py", f"--config={spec}", "--config.sweep_index=5", f"--workdir={tmp_path}")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      f"error: config.sweep_index=5 but the sweep {spec} has 2 members (0..1)")


def test_submitit_local_executor_runs_the_members(tmp_path):
  pytest.importorskip("submitit")
  spec = _sweep_file(tmp_path, 'sweep("seed", [3])', _steps(20))
  statuses = launch.run_submitit(sweeps.Sweep(spec), str(tmp_path / "w"), cluster="local")
  assert statuses == {"seed=3": "finished"}
  assert os.path.isdir(tmp_path / "w" / "submitit")  # submitit's own job folder


def test_vectorised_members_equal_their_separate_runs(tmp_path):
  """Seed, β and learning rate differ; one vmapped program trains both."""
  spec = _sweep_file(tmp_path, '[{"seed": 0}, {"seed": 1, "objective.beta": 2.0, '
                     '"optimizer.learning_rate": 3e-3}, {"model.latent_dim": 3}]')
  s = sweeps.Sweep(spec)
  assert launch.units(s, str(tmp_path / "v"), vectorize=True) == [[0, 1], [2]]
  together = launch.run_group(s, [0, 1], str(tmp_path / "v"))
  for i in (1,):  # the member that differs in all three
    alone = launch.run_member(s, i, str(tmp_path / "s"))
    a = runs.load_run(str(tmp_path / "v" / s.names[i]), "latest")
    b = runs.load_run(str(tmp_path / "s" / s.names[i]), "latest")
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert [r["step"] for r in a.metrics] == [r["step"] for r in b.metrics]
    assert a.metrics[-1]["vectorized_members"] == 2
    np.testing.assert_allclose(together[i]["test"]["nll"]["value"],
                               alone["test"]["nll"]["value"], rtol=1e-5)


def test_vectorised_group_joins_members_left_at_different_steps(tmp_path):
  """Member 0 stopped at step 10 by its own process (scripts/train.py
  --config.sweep_index=0 records the index), member 1 at step 30 (a vectorised
  path leaves it unset); each keeps one checkpoint, so no step is common to
  both. The group trains member 0 alone to step 30, then both: each ends where
  its uninterrupted separate run ends, with its training time recorded."""
  spec = _sweep_file(tmp_path, '[{"seed": 0}, {"seed": 1, "objective.beta": 2.0}]',
                     'sweeps.apply(sweeps.experiment("digits", "small"), '
                     '{"train.keep_checkpoints": 1, "eval.figures": False})')
  s, work = sweeps.Sweep(spec), str(tmp_path / "v")
  for i, steps in ((0, 10), (1, 30)):
    c = sweeps.apply(s.configs[i], {"train.num_steps": steps})
    c.sweep_index = 0 if i == 0 else None
    launch.run_member(s, i, work, c)
  assert sorted(os.listdir(tmp_path / "v" / s.names[1] / "checkpoints")) == ["30"]
  together = launch.run_group(s, [0, 1], work)
  for i in (0, 1):
    alone = launch.run_member(s, i, str(tmp_path / "s"))
    a = runs.load_run(str(tmp_path / "v" / s.names[i]), "latest")
    b = runs.load_run(str(tmp_path / "s" / s.names[i]), "latest")
    assert a.step == b.step == 40
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert [r["step"] for r in a.metrics] == [r["step"] for r in b.metrics]
    np.testing.assert_allclose(together[i]["test"]["nll"]["value"],
                               alone["test"]["nll"]["value"], rtol=1e-5)
    assert together[i]["train_seconds"] > 0
    assert a.metrics[-1]["train_seconds"] == together[i]["train_seconds"]
  assert launch.statuses(s, work) == {n: "finished" for n in s.names}


def test_a_member_saved_past_a_shortened_run_counts_as_at_its_end(tmp_path):
  """num_steps may shrink on a resume: member 0 saved at step 20, member 1 at
  10, the group now 10 steps long: nothing trains, both are evaluated."""
  spec = _sweep_file(tmp_path, '[{"seed": 0}, {"seed": 1}]',
                     'sweeps.apply(sweeps.experiment("digits", "small"), '
                     '{"train.num_steps": 10, "eval.figures": False})')
  s, work = sweeps.Sweep(spec), str(tmp_path / "v")
  launch.run_member(s, 0, work, sweeps.apply(s.configs[0], {"train.num_steps": 20}))
  launch.run_member(s, 1, work)
  for r in launch.run_group(s, [0, 1], work):
    assert np.isfinite(r["test"]["nll"]["value"])
  assert [r["step"] for r in runs.load_run(str(tmp_path / "v" / s.names[0])).metrics] == [10, 20]


def test_a_diverging_vectorised_member_fails_alone(tmp_path, monkeypatch):
  """Learning rates 3e-3 and 1e30 under nan_policy=stop: the second member
  fails with its separate run's error, the first trains on; stopped by a
  signal at step 30, each member's status says its own end, and the same
  command resumes the first, which finishes with its separate run's numbers;
  the process reports the one failure."""
  from vae_jax import train

  spec = _sweep_file(tmp_path, 'sweep("optimizer.learning_rate", [3e-3, 1e30])',
                     'sweeps.apply(sweeps.experiment("digits", "small"), {"eval.figures": False})')
  s, work = sweeps.Sweep(spec), str(tmp_path / "v")

  with monkeypatch.context() as m:  # the third dispatch of 10 steps ends at step 30
    m.setattr(train, "StopOnSignal", signal_at_dispatch(3, 15))
    with pytest.raises(train.Interrupted, match="at step 30"):
      launch.run_group(s, [0, 1], work)
  good, bad = (launch.read_status(launch.member_dir(work, s, i)) for i in (0, 1))
  assert "stopped by signal 15 at step 30" in good["error"] and "non-finite" in bad["error"]
  with pytest.raises(launch.MembersFailed, match=r"1 of the 2 members .*\(learning_rate=1e\+30\)"):
    launch.run_group(s, [0, 1], work)
  good, bad = (launch.read_status(launch.member_dir(work, s, i)) for i in (0, 1))
  assert good["status"] == "finished" and good["error"] is None
  assert bad["status"] == "failed" and "non-finite" in bad["error"]
  with pytest.raises(UserError, match="non-finite") as separate:
    launch.run_member(s, 1, str(tmp_path / "s"))
  assert bad["error"] == f"UserError: {separate.value}"
  alone = launch.run_member(s, 0, str(tmp_path / "s"))
  got = runs.read_eval(os.path.join(launch.member_dir(work, s, 0), runs.EVAL_FILE))
  np.testing.assert_allclose(got["test"]["nll"]["value"], alone["test"]["nll"]["value"],
                             rtol=1e-5)


def test_a_group_ended_by_another_error_keeps_a_diverged_members_own(tmp_path, monkeypatch):
  """The healthy member's evaluation fails to write after the other diverged:
  each status names its own error."""
  from vae_jax import train
  from vae_jax.errors import WriteError

  spec = _sweep_file(tmp_path, 'sweep("optimizer.learning_rate", [3e-3, 1e30])',
                     'sweeps.apply(sweeps.experiment("digits", "small"), '
                     '{"eval.figures": False, "train.num_steps": 20})')
  s, work = sweeps.Sweep(spec), str(tmp_path / "v")

  def no_room(self, *args, **kwargs):
    raise WriteError(self.eval_path, "No space left on device")

  monkeypatch.setattr(train.RunFiles, "finish", no_room)
  with pytest.raises(WriteError):
    launch.run_group(s, [0, 1], work)
  good, bad = (launch.read_status(launch.member_dir(work, s, i)) for i in (0, 1))
  assert "No space left" in good["error"] and "non-finite" in bad["error"]


def _fake_member(workdir, name, elbo, nll, rate, status="finished"):
  os.makedirs(workdir / name)
  if status == "finished":
    summary = lambda v: {"value": v, "se": 0.1, "mc_err": 0.01, "bits_per_dim": v / 100}
    (workdir / name / "eval.json").write_text(json.dumps({"test": {
        "elbo": summary(elbo), "nll": summary(nll), "rate": rate, "distortion": nll - 1,
        "active_units": 3}}))
  (workdir / name / "status.json").write_text(json.dumps(
      {"status": status, "seconds": 10.0, "error": None if status == "finished" else "boom"}))


def test_results_table_from_fake_finished_runs(tmp_path):
  spec = _sweep_file(tmp_path, 'product(sweep("objective.beta", [0.5, 2.0]), '
                     'sweep("seed", [0, 1, 2]))')
  s, work = sweeps.Sweep(spec), tmp_path / "w"
  nll = {(0.5, 0): 90.0, (0.5, 1): 92.0, (0.5, 2): 97.0, (2.0, 0): 100.0, (2.0, 1): 104.0}
  for (beta, seed), v in nll.items():
    _fake_member(work, f"beta={beta:g},seed={seed}", -v - 5, v, rate=10 / beta)
  _fake_member(work, "beta=2,seed=2", 0, 0, 0, status="failed")
  csv_path, md_path = results.write_tables(s, str(work))
  with open(csv_path) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("name,objective.beta,seed,test_elbo,test_nll")
  assert lines[1].startswith('"beta=0.5,seed=0",0.5,0,-95.0,90.0')
  assert lines[6].split(",")[-3:] == ["failed", "10.0", "boom"]
  agg = results.aggregate(results.collect(s, str(work)), s.swept_keys())
  assert [a["seeds"] for a in agg] == [3, 2]  # the failed seed is left out
  np.testing.assert_allclose(agg[0]["test_nll"], np.mean([90, 92, 97]))
  np.testing.assert_allclose(agg[0]["test_nll_std"], np.std([90, 92, 97], ddof=1))
  np.testing.assert_allclose(agg[1]["test_nll_std"], np.std([100, 104], ddof=1))
  with open(md_path) as f:
    text = f.read()
  assert f"93.000 ± {np.std([90, 92, 97], ddof=1):.3f}" in text
  png = results.plot(s, str(work), x="test_rate", y="test_nll", along="objective.beta")
  assert os.path.getsize(png) > 1000


def test_results_md_shows_small_swept_values_as_they_are(tmp_path):
  """Learning rates 1e-4 and 3e-4 are two rows, not two rows of 0.000."""
  spec = _sweep_file(tmp_path, 'product(sweep("optimizer.learning_rate", [1e-4, 3e-4]), '
                     'sweep("seed", [0, 1]))')
  s, work = sweeps.Sweep(spec), tmp_path / "w"
  for name in s.names:
    _fake_member(work, name, -100.0, 95.0, rate=5.0)
  _, md_path = results.write_tables(s, str(work))
  with open(md_path) as f:
    rows = [line for line in f.read().splitlines() if line.startswith("| ")]
  per_member = [r.split(" | ")[1] for r in rows if r.startswith("| learning_rate=")]
  assert per_member == ["0.0001", "0.0001", "0.0003", "0.0003"]
  assert [r.split(" | ")[0] for r in rows if r.startswith("| 0.000")] == ["| 0.0001", "| 0.0003"]


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_forms_expand_and_validate(name):
  for form in ("small", "full"):
    s = sweeps.Sweep(os.path.join(ROOT, "experiments", "ablations", f"{name}.py:{form}"))
    assert len(s) >= 4 and len(set(s.names)) == len(s)
    for p in s.plots:  # each figure is of swept keys and reported figures
      assert p["x"] in s.swept_keys() + list(results.METRICS)
      assert p.get("along", p["x"]) in s.swept_keys()


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_small_form_end_to_end(tmp_path, name):
  """Each shipped ablation as a user runs it (vectorised where it can be):
  every member finishes, its figures are drawn, and every member's importance-
  sampled log p(x) is above its ELBO. For β, the rate falls as β grows, as it
  must at the optimum of distortion + β·rate (Alemi et al. 2018)."""
  # The slowest three train 50 steps: what is checked of them holds at any step.
  fewer = ("--set=train.num_steps=50",) if name in ("estimator", "iwae_k",
                                                    "prior_posterior") else ()
  out = _cli("sweep.py", f"--config=experiments/ablations/{name}.py:small",
             f"--workdir={tmp_path}", "--vectorize", "--parallel=2", *fewer)
  assert out.returncode == 0, out.stderr[-2000:]
  s = sweeps.Sweep(os.path.join(ROOT, "experiments", "ablations", f"{name}.py:small"))
  rows = results.collect(s, str(tmp_path))
  assert all(r["status"] == "finished" for r in rows)
  assert all(r["test_nll"] < -r["test_elbo"] for r in rows)
  for p in s.plots:
    assert os.path.getsize(tmp_path / f"results_{p['y']}_vs_{p['x'].rsplit('.', 1)[-1]}.png") > 1000
  if name == "beta":
    agg = results.aggregate(rows, s.swept_keys())
    rates = [a["test_rate"] for a in sorted(agg, key=lambda a: a["objective.beta"])]
    assert all(r1 > r2 for r1, r2 in zip(rates, rates[1:])), rates
  if name == "kl_estimator":
    assert all(r["test_grad_encoder_variance_mc_over_analytic_kl"] > 0 for r in rows)
  if name == "estimator":  # at k = 1, w̃ = w̃² = 1: DReG is STL, run for run
    by = {(r["objective.estimator"], r["objective.num_samples"]): r for r in rows}
    assert by[("dreg", 1)]["test_nll"] == pytest.approx(by[("stl", 1)]["test_nll"], rel=1e-5)
    assert all(r["test_grad_encoder_snr"] > 0 and r["test_grad_decoder_snr"] > 0 for r in rows)


def test_vectorised_members_replay_a_nan_step_like_their_separate_runs(tmp_path, monkeypatch):
  """A NaN gradient (finite loss) at step 13 in every member, nan_policy=skip:
  the vmapped loop, unguarded, sees the non-finite end state at the next log,
  replays the stretch guarded and skips that step alone, ending where the
  member's separate run ends."""
  patch_nan_gradient_at(monkeypatch, 12)
  spec = _sweep_file(tmp_path, '[{"seed": 0}, {"seed": 1, "objective.beta": 2.0}]',
                     'sweeps.apply(sweeps.experiment("digits", "small"), '
                     '{"train.nan_policy": "skip"})')
  s = sweeps.Sweep(spec)
  launch.run_group(s, [0, 1], str(tmp_path / "v"))
  launch.run_member(s, 1, str(tmp_path / "s"))
  a = runs.load_run(str(tmp_path / "v" / s.names[1]), "latest")
  b = runs.load_run(str(tmp_path / "s" / s.names[1]), "latest")
  assert [r["skipped_steps"] for r in a.metrics] == [r["skipped_steps"] for r in b.metrics]
  assert sum(r["skipped_steps"] for r in a.metrics) == 1
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
