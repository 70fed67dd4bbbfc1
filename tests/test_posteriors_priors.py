"""IAF posteriors, mixture and VampPrior priors, STL and DReG, each against an
independent truth: jax.jacfwd's Jacobian, numerical integration on a grid,
scipy and numpy loops, the exact posterior of a linear-Gaussian model, and the
plain estimator's mean gradient over many draws."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from vae_jax import config as config_lib
from vae_jax import data, distributions, evaluation, flows, models, objectives, plots, priors
from vae_jax.errors import UserError

from conftest import model_config, train_cli
from linear_gaussian import LinearGaussian

SHAPE = (8, 8, 1)


def _perturbed(params, seed=1, scale=0.3):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


def _flow(dim, steps=3, context_dim=2, hidden=7, seed=0):
  f = flows.IAF(dim, context_dim, steps, hidden)
  # Far from the identity, so every masked weight matters.
  return f, _perturbed(f.init(jax.random.key(seed)), seed + 1, scale=0.8)


def _config(name: str, **fields):
  """The shared tiny model, with small flows and 3 prior components."""
  return model_config(name, **{"flow_hidden": 6, "prior_components": 3, **fields})


def _model(name: str, **fields):
  m = models.build(_config(name, **fields), data.DataSpec(SHAPE, 2))
  return m, _perturbed(m.init(jax.random.key(0)), scale=0.1)


def _image(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 2, SHAPE), jnp.float32)


# --- IAF ---------------------------------------------------------------------------------

def test_made_masks_are_autoregressive():
  """The masks' product says which input reaches which output: j < i only."""
  for dim, hidden in [(1, 4), (3, 7), (5, 12)]:
    into, out = flows.made_masks(dim, hidden)
    reach = (into @ out) > 0  # (inputs, outputs)
    assert not np.any(np.tril(reach)), (dim, hidden)  # input j reaches output i only if j < i
    if dim > 1:
      assert reach[0, -1]  # the first input reaches the last output


def test_each_step_jacobian_is_triangular_with_the_gates_on_its_diagonal():
  f, p = _flow(4)
  z, c = jax.random.normal(jax.random.key(2), (4,)), jax.random.normal(jax.random.key(3), (2,))
  for t in range(f.steps):
    step = lambda v: f.step(p[f"step_{t}"], v, c)[0]
    jac = np.asarray(jax.jacfwd(step)(z))
    assert np.all(np.triu(jac, 1) == 0), jac  # output i does not see inputs > i
    np.testing.assert_allclose(np.log(np.diag(jac)), f.step(p[f"step_{t}"], z, c)[1],
                               rtol=1e-4, atol=1e-5)
    assert np.all(jac[np.tril_indices(4, -1)] != 0)  # and does see every input < i


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_log_det_equals_jacfwd_log_abs_det_and_inverse_is_exact(dim):
  f, p = _flow(dim)
  c = jax.random.normal(jax.random.key(4), (2,))
  for seed in range(3):
    z0 = jax.random.normal(jax.random.key(10 + seed), (dim,))
    jac = np.asarray(jax.jacfwd(lambda v: f.forward(p, v, c)[0])(z0), np.float64)
    _, log_abs_det = np.linalg.slogdet(jac)
    z, log_det = f.forward(p, z0, c)
    np.testing.assert_allclose(log_det, log_abs_det, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f.inverse(p, z, c), z0, rtol=1e-4, atol=1e-4)


def test_density_at_the_known_base_draw_has_the_inverses_value_and_derivative():
  """log q at z given the base draw ε (what STL and DReG evaluate) against the
  flow's inverse: at ordinary gates the same value and the same gradient in z,
  the context and q0's mean; with gates near 0.05 over 16 units, where the
  inverse's divisions turn to NaN in float32, still the sampling density."""
  f = flows.IAF(4, 2, 3, 7)
  p = _perturbed(f.init(jax.random.key(0)), 1, scale=0.5)  # log det down to -3.7
  q0 = distributions.DiagGaussian(jnp.array([0.3, -0.2, 0.1, 0.5]), jnp.array([-0.4, 0.2, 0., -1.]))
  eps, context = jax.random.normal(jax.random.key(5), (6, 4)), jnp.array([0.7, -1.3])
  z, log_q = flows.sample_and_log_prob(q0, eps, f, p, context)

  def value(z, context, mean, eps):
    return jnp.sum(flows.log_prob(distributions.DiagGaussian(mean, q0.log_var), z, f, p,
                                  context, eps=eps))

  known = jax.grad(value, argnums=(0, 1, 2))(z, context, q0.mean, eps)
  inverted = jax.grad(value, argnums=(0, 1, 2))(z, context, q0.mean, None)
  np.testing.assert_allclose(value(z, context, q0.mean, eps), jnp.sum(log_q), rtol=1e-6)
  np.testing.assert_allclose(value(z, context, q0.mean, None), jnp.sum(log_q), rtol=1e-5)
  for a, b in zip(known, inverted):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

  f = flows.IAF(16, 2, 2, 32)  # weights at the LeCun scale, every gate bias -3
  p = {k: {**v, "w_m": 10 * v["w_m"], "w_s": 10 * v["w_s"], "b_s": jnp.full((16,), -3.)}
       for k, v in f.init(jax.random.key(1)).items()}
  q0 = distributions.DiagGaussian(jnp.zeros(16), jnp.zeros(16))
  eps = jax.random.normal(jax.random.key(6), (256, 16))
  z, log_q = flows.sample_and_log_prob(q0, eps, f, p, context)
  _, log_q_sg = flows.sample_and_log_prob(q0, eps, f, p, context, stop_grad_q=True)
  np.testing.assert_allclose(log_q_sg, log_q, rtol=1e-5)
  assert not np.all(np.isfinite(flows.log_prob(q0, z, f, p, context)))  # the inverse's NaN


@pytest.mark.parametrize("name", ["flat", "bottom_up", "top_down"])
def test_model_log_q_is_the_change_of_variables_density(name):
  """The model's log q(z|x) of each group, against log N(ε; 0, I) - log |det ∂z/∂ε|
  with jax.jacfwd's Jacobian of the model's own map ε -> z (the top group of
  each model, whose conditioning is x alone)."""
  m, params = _model(name, posterior="iaf", flow_steps=2)
  x = _image()
  top = next(iter(m.groups))
  if name == "flat":
    h = m._encoder_out(params, x)
    d = m.latent_dim
    q, context, fp = (m.encode(params, x), h[2 * d:], params["encoder"]["flow"])
    f = m.flow
  elif name == "bottom_up":
    # The top group z2 given z1: fix z1 and differentiate the map to z2.
    z1 = jnp.ones((4,)) * 0.3
    q, context = m._q_context(params, 1, z1)
    f, fp = m.flow(1), params["encoder"]["flow_1"]
  else:
    feats = m._features(params, x)
    prior_head = {}

    def grab(g, s, prior, h):
      prior_head.setdefault(g, (prior, h))
      return prior.mean

    m._top_down(params, (), grab)
    prior, h = prior_head[top]
    q, context = m._posterior(params, top, prior, h, feats[0])
    q = models.base.distributions.DiagGaussian(q.mean[0, 0], q.log_var[0, 0])
    context, f, fp = context[0, 0], m.flow(), params["encoder"][f"flow_{top}"]
  eps = jax.random.normal(jax.random.key(5), q.mean.shape)
  to_z = lambda e: flows.sample_and_log_prob(q, e, f, fp, context)[0]
  z, log_q = flows.sample_and_log_prob(q, eps, f, fp, context)
  jac = np.asarray(jax.jacfwd(to_z)(eps), np.float64)
  truth = stats.norm.logpdf(np.asarray(eps, np.float64)).sum() - np.linalg.slogdet(jac)[1]
  np.testing.assert_allclose(log_q, truth, rtol=1e-4, atol=1e-3)
  # STL's stopped-parameter density: the same value, at the flow's inverse.
  _, log_q_sg = flows.sample_and_log_prob(q, eps, f, fp, context, stop_grad_q=True)
  np.testing.assert_allclose(log_q_sg, log_q, rtol=1e-4, atol=1e-3)
  # The whole model: its draws' densities are finite and it has no closed-form KL.
  draws = m.draws(params, x, jax.random.key(6), 3)
  assert not m.analytic_kl and draws.kl == {}
  assert all(np.all(np.isfinite(v)) for v in draws.log_qz.values())


@pytest.mark.parametrize("dim", [1, 2])
def test_flow_sampling_and_density_agree_kl_against_a_grid(dim):
  """KL(q ‖ N(0, I)) of a flow on a 1- or 2-d Gaussian: the Monte Carlo mean of
  log q - log p over draws (forward pass and its log-det) against ∫ q log(q/p)
  on a grid, q(z) = N(f⁻¹(z)) / |det| from the inverse; the grid's q
  integrates to 1."""
  f, p = _flow(dim, steps=2, seed=3)
  c = jnp.asarray([0.3, -0.5])
  base = models.base.distributions.DiagGaussian(jnp.full((dim,), 0.4), jnp.full((dim,), -0.5))
  n = 200_000
  eps = jax.random.normal(jax.random.key(7), (n, dim))
  z, log_q = flows.sample_and_log_prob(base, eps, f, p, c)
  log_p = stats.norm.logpdf(np.asarray(z, np.float64)).sum(axis=1)
  mc = np.asarray(log_q, np.float64) - log_p
  lo, hi = np.percentile(np.asarray(z), 0.001, axis=0) - 1, np.percentile(
      np.asarray(z), 99.999, axis=0) + 1
  m = 4000 if dim == 1 else 400
  axes = [np.linspace(lo[i], hi[i], m) for i in range(dim)]
  grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
  cell = np.prod([(a[1] - a[0]) for a in axes])
  g = jnp.asarray(grid, jnp.float32)
  z0 = f.inverse(p, g, jnp.broadcast_to(c, (len(grid), 2)))
  _, log_det = f.forward(p, z0, jnp.broadcast_to(c, (len(grid), 2)))
  log_qg = (np.asarray(base.log_prob(z0), np.float64) - np.asarray(log_det, np.float64))
  qg = np.exp(log_qg)
  assert abs(qg.sum() * cell - 1) < 2e-3
  kl_grid = np.sum(qg * (log_qg - stats.norm.logpdf(grid).sum(axis=1))) * cell
  se = mc.std() / math.sqrt(n)
  assert abs(mc.mean() - kl_grid) < 4 * se + 2e-3, (mc.mean(), kl_grid, se)


# --- Priors ------------------------------------------------------------------------------

def test_mixture_log_density_against_scipy_and_sampling_moments():
  prior = priors.Prior("mixture", 3, (2,))
  params = _perturbed(prior.init(jax.random.key(0)), scale=0.7)
  z = np.random.default_rng(0).normal(size=(5, 2)) * 2
  log_w = np.log(np.exp(params["logits"]) / np.exp(params["logits"]).sum())
  lv = 10 * np.tanh(np.asarray(params["log_vars"]) / 10)
  truth = [logsumexp([log_w[k] + stats.multivariate_normal.logpdf(
      zi, params["means"][k], np.diag(np.exp(lv[k]))) for k in range(3)]) for zi in z]
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z)), truth, rtol=1e-5,
                             atol=1e-5)
  # Draws have the mixture's mean (within 5 standard errors).
  draws = jax.vmap(lambda r: prior.sample(params, r))(jax.random.split(jax.random.key(1), 20000))
  w = np.exp(log_w)
  mean = (w[:, None] * np.asarray(params["means"])).sum(0)
  second = (w[:, None] * (np.asarray(params["means"]) ** 2 + np.exp(lv))).sum(0)
  se = np.sqrt((second - mean ** 2) / len(draws))
  assert np.all(np.abs(np.asarray(draws).mean(0) - mean) < 5 * se)


@pytest.mark.parametrize("name", ["flat", "bottom_up", "top_down"])
def test_vampprior_log_density_against_a_numpy_loop(name):
  """log p(z) = logsumexp_k log q(z|u_k) - log K with q(z|u_k) the top group's
  posterior at each pseudo-input, one at a time, summed with scipy."""
  m, params = _model(name, prior="vampprior")
  top = next(iter(m.groups))
  u = jax.nn.sigmoid(params["decoder"]["prior"]["pseudo_inputs"])
  comps = [m.posterior_summary(params, u[k] / m.input_scale)[top] for k in range(3)]
  z = np.asarray(jax.random.normal(jax.random.key(8), (4,) + m.groups[top]))
  truth = [logsumexp([stats.norm.logpdf(zi, np.asarray(c.mean), np.exp(0.5 * np.asarray(
      c.log_var))).sum() for c in comps]) - math.log(3) for zi in z]
  np.testing.assert_allclose(m.top_log_prior(params, jnp.asarray(z)), truth, rtol=1e-4,
                             atol=1e-4)
  d = m.draws(params, _image(), jax.random.key(9), 2)
  np.testing.assert_allclose(d.log_pz[top], m.top_log_prior(params, d.z[top]), rtol=1e-5)
  assert top not in d.kl and not m.analytic_kl


@pytest.mark.parametrize("name", ["flat", "bottom_up", "top_down"])
def test_mixture_prior_in_every_model(name):
  m, params = _model(name, prior="mixture")
  top = next(iter(m.groups))
  assert set(params["decoder"]["prior"]) == {"means", "log_vars", "logits"}
  d = m.draws(params, _image(), jax.random.key(9), 2)
  prior = priors.Prior("mixture", 3, m.groups[top])
  np.testing.assert_allclose(d.log_pz[top], prior.log_prob(params["decoder"]["prior"],
                                                           d.z[top]), rtol=1e-5)
  assert top not in d.kl
  z = m.sample_latents(params, jax.random.key(3))
  assert {g: v.shape for g, v in z.items()} == m.groups
  # The figures sample from host (NumPy) parameters, vmapped over keys.
  grid = plots.sample_grid(m, jax.device_get(params), jax.random.split(jax.random.key(4), 4))
  assert grid.dtype == np.uint8 and grid.size > 0


@pytest.mark.parametrize("name", ["flat", "bottom_up", "top_down"])
def test_mutual_information_is_not_estimated_for_a_flow_posterior(name):
  """The mixture estimator needs q(z|x) Gaussian; a flow's q is not its
  Gaussian summary, so no figure is given (nor a marginal KL) and the table
  says why. With the Gaussian posterior the figure is there."""
  images = np.asarray(jax.random.bernoulli(jax.random.key(2), 0.4, (6,) + SHAPE), np.float32)
  for posterior, steps in (("iaf", 2), ("gaussian", 0)):
    m, params = _model(name, posterior=posterior, flow_steps=steps)
    assert m.gaussian_posteriors == (posterior == "gaussian")
    res = evaluation.evaluate(m, params, images, jax.random.key(0), batch_size=6,
                              elbo_samples=2)
    mi = [g["mutual_information"] for g in res["groups"].values()]
    if posterior == "iaf":
      assert mi == [None] * len(mi) and "marginal_kl" not in res
      assert "n/a (flow)" in "\n".join(evaluation.group_table(res["groups"]))
    else:
      assert all(np.isfinite(v) for v in mi)
      assert ("marginal_kl" in res) == (len(mi) == 1)


# --- Estimators --------------------------------------------------------------------------

def _encoder_grads(model, params, x, objective, keys):
  def one(key):
    g = jax.grad(lambda p: objective.loss(model, p, x[None], key, jnp.asarray(0))[0])(params)
    return g
  return jax.vmap(one)(keys)


def test_stl_sticks_the_landing_at_the_exact_posterior():
  """Linear-Gaussian model, encoder = the exact posterior: log w is the same for
  every z, so STL's encoder gradient is zero for every draw; the plain
  reparameterisation gradient's is not (its score term has mean zero only)."""
  lg = LinearGaussian()
  params = lg.params()
  x = jnp.asarray(lg.sample_x(1)[0], jnp.float32)
  keys = jax.random.split(jax.random.key(0), 16)
  grads = {}
  for est in ("reparam", "stl"):
    o = objectives.Objective(name="elbo", num_samples=1, analytic_kl=False, estimator=est)
    g = _encoder_grads(lg.vae, params, x, o, keys)["encoder"]
    grads[est] = np.concatenate([np.asarray(v).reshape(16, -1) for v in jax.tree.leaves(g)], 1)
  assert np.max(np.abs(grads["stl"])) < 1e-4, np.max(np.abs(grads["stl"]))
  assert np.min(np.max(np.abs(grads["reparam"]), axis=1)) > 1e-2  # every draw


def test_stopped_log_q_gives_the_path_derivative_in_a_stack():
  """In a stack q(z1|x) q(z2|z1), the path derivative keeps z1's path through
  q(z2|z1)'s conditioning and drops only the score at fixed draws: by the chain
  rule, path = d/dφ log q_φ(z(φ)) - ∂/∂φ log q_φ(z)|z fixed, both computed here
  from the model's own conditionals (an independent density evaluation)."""
  m, params = _model("bottom_up")
  x = _image(2)
  key = jax.random.key(4)

  def density(p, z):  # log q(z1|x) + log q(z2|z1) at given draws
    return sum(jnp.sum(m._q(p, i, x if i == 0 else z[f"z{i}"]).log_prob(z[f"z{i + 1}"]))
               for i in range(2))

  draw = lambda p: m.draws(p, x, key, 3).z
  total = jax.grad(lambda p: density(p, draw(p)))(params)
  score = jax.grad(lambda p: density(p, draw(params)))(params)
  got = jax.grad(lambda p: sum(jnp.sum(v) for v in m.draws(p, x, key, 3, stop_grad_q=True)
                               .log_qz.values()))(params)
  for a, b, c in zip(jax.tree.leaves(total), jax.tree.leaves(score), jax.tree.leaves(got)):
    np.testing.assert_allclose(c, a - b, rtol=1e-3, atol=1e-4)


CASES = [("flat", "gaussian", "elbo", "stl", 1), ("flat", "gaussian", "iwae", "dreg", 5),
         ("bottom_up", "iaf", "elbo", "stl", 1), ("bottom_up", "iaf", "iwae", "dreg", 5),
         ("top_down", "gaussian", "iwae", "dreg", 4)]


@pytest.mark.parametrize("name,posterior,objective,estimator,k", CASES)
def test_estimator_is_unbiased_and_leaves_the_decoder_gradient(name, posterior, objective,
                                                               estimator, k):
  """The mean gradient over 1000 draws equals the plain estimator's: every
  parameter's paired difference within 5.5 of its standard errors (and
  typically within 1: the mean squared z-score is checked below 2). The
  decoder's gradient is the plain one, draw for draw."""
  m, params = _model(name, posterior=posterior, flow_steps=2)
  x = _image(3)
  n = 1000
  keys = jax.random.split(jax.random.key(1), n)
  flat = {}
  for est in ("reparam", estimator):
    o = objectives.Objective(name=objective, num_samples=k, analytic_kl=False, estimator=est)
    flat[est] = jax.jit(lambda ks, o=o: _encoder_grads(m, params, x, o, ks))(keys)
  for part in ("decoder", "likelihood"):
    for a, b in zip(jax.tree.leaves(flat["reparam"][part]), jax.tree.leaves(flat[estimator][part])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  enc = [np.concatenate([np.asarray(v, np.float64).reshape(n, -1)
                         for v in jax.tree.leaves(flat[e]["encoder"])], 1)
         for e in ("reparam", estimator)]
  diff = enc[1] - enc[0]
  se = diff.std(axis=0, ddof=1) / math.sqrt(n)
  keep = se > 1e-7
  z = diff.mean(axis=0)[keep] / se[keep]
  assert np.max(np.abs(z)) < 5.5 and np.mean(z ** 2) < 2, (np.max(np.abs(z)), np.mean(z ** 2))
  # And the variance is lower, as these estimators are for.
  assert enc[1].var(axis=0).sum() < enc[0].var(axis=0).sum()


def test_stl_iwae_is_biased_for_k_above_one():
  """STL's IWAE gradient for k > 1 is biased (Tucker et al. 2019, section 3),
  which is why the library offers DReG for IWAE. Per draw, the plain gradient
  minus STL's is exactly the dropped score term Σ_i w̃_i ∂φ log q_φ(z_i) at
  fixed z_i, computed here from the Gaussian's own density; its mean over
  2000 draws is many standard errors from zero, where at k = 1 (w̃ = 1) it has
  mean zero (the unbiased case tested above)."""
  m, params = _model("flat")
  x, k, n = _image(3), 5, 2000
  # In chunks of 500 draws: jax 0.10.2's XLA:CPU miscompiles the gradient of a
  # size-1 vmap (the loss's batch of one) inside a jitted vmap of >= ~1500
  # draws (errors of O(1); eager and smaller vmaps agree to 1e-5).
  keys = jax.random.split(jax.random.key(2), n).reshape(-1, 500)
  grads = {}
  for est in ("reparam", "stl"):
    o = objectives.Objective(name="iwae", num_samples=k, analytic_kl=False, estimator=est)
    fn = jax.jit(lambda ks, o=o: _encoder_grads(m, params, x, o, ks)["encoder"])
    grads[est] = jax.tree.map(lambda *c: jnp.concatenate(c), *[fn(ks) for ks in keys])

  def dropped(key):  # Σ_i w̃_i ∇φ log q_φ(z_i), the draws z_i and weights w̃_i held fixed
    d = m.draws(params, x, jax.random.split(key, 1)[0], k)  # the loss's key for example 0
    w = jax.nn.softmax(d.log_weights())
    z = d.z[next(iter(m.groups))]
    return jax.grad(lambda p: jnp.sum(w * m.encode(p, x).log_prob(z)))(params)["encoder"]

  score = jax.jit(jax.vmap(dropped))(keys.reshape(-1))
  flat = lambda g: np.concatenate([np.asarray(v, np.float64).reshape(n, -1)
                                   for v in jax.tree.leaves(g)], 1)
  diff, score = flat(grads["reparam"]) - flat(grads["stl"]), flat(score)
  np.testing.assert_allclose(diff, score, rtol=1e-3, atol=1e-4 * np.abs(score).max())
  se = score.std(axis=0, ddof=1) / math.sqrt(n)
  z = score.mean(axis=0)[se > 1e-7] / se[se > 1e-7]
  assert np.max(np.abs(z)) > 10 and np.mean(z ** 2) > 10, (np.max(np.abs(z)), np.mean(z ** 2))


def test_gradient_snr_script_compares_estimators_at_one_runs_parameters(tmp_path):
  """scripts/gradient_snr.py: every estimator at the same parameters and
  draws. At k = 1 DReG is STL (w̃ = w̃² = 1); the decoder's gradient, and so
  its SNR, is the same under all three at each k."""
  import json
  import subprocess
  import sys

  from conftest import ROOT
  run = tmp_path / "run"
  assert train_cli(run, "--config.train.num_steps=20").returncode == 0
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gradient_snr.py"),
                        f"--workdir={run}", "--num_samples=1,4", "--draws=20"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = {(r["estimator"], r["num_samples"]): r
          for r in json.loads((run / "gradient_snr.json").read_text())["rows"]}
  assert len(rows) == 6
  assert rows["dreg", 1]["encoder_snr"] == pytest.approx(rows["stl", 1]["encoder_snr"], rel=1e-4)
  assert rows["stl", 4]["encoder_snr"] != pytest.approx(rows["dreg", 4]["encoder_snr"], rel=1e-3)
  for k in (1, 4):
    for e in ("stl", "dreg"):
      assert rows[e, k]["decoder_snr"] == pytest.approx(rows["reparam", k]["decoder_snr"],
                                                         rel=1e-4)


# --- Config ------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    ({"model.prior": "mixture"}, "model.prior=mixture/vampprior: the KL to a mixture"),
    ({"model.posterior": "iaf"}, "a flow's KL has no closed form"),
    ({"objective.kl": "mc", "objective.estimator": "dreg"}, "dreg needs objective.name=iwae"),
    ({"objective.estimator": "stl"}, "set objective.kl=mc"),
    ({"objective.name": "iwae", "objective.kl": "mc", "objective.estimator": "dreg",
      "model.prior": "vampprior"}, "DReG's encoder weighting"),
    ({"objective.kl": "mc", "model.posterior": "iaf", "eval.gap_examples": 4},
     "needs model.posterior=gaussian and model.prior=standard"),
    ({"model.prior": "gmm"}, "choose one of standard, mixture, vampprior"),
    ({"model.flow_steps": 0}, "model.flow_steps=0 is out of range"),
])
def test_invalid_combinations_are_one_line(fields, message):
  c = config_lib.default()
  for path, value in fields.items():
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(UserError, match=message) as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("args", [
    ("--config.model.name=bottom_up", "--config.model.latent_dims=(6, 3)",
     "--config.model.stochastic_hidden=((8,),)", "--config.objective.kl=mc",
     "--config.objective.name=iwae", "--config.objective.num_samples=3",
     "--config.model.posterior=iaf", "--config.model.prior=mixture",
     "--config.objective.estimator=dreg"),
    ("--config.model.name=top_down", "--config.model.width=8",
     "--config.model.latent_channels=2", "--config.model.groups_per_scale=(1, 1)",
     "--config.objective.kl=mc", "--config.model.posterior=iaf",
     "--config.model.prior=vampprior", "--config.objective.estimator=stl"),
])
def test_small_forms_train_and_evaluate_end_to_end(tmp_path, args):
  out = train_cli(tmp_path, *args, "--config.train.num_steps=20", "--config.eval.figures=False")
  assert out.returncode == 0, out.stderr[-3000:]
