"""Every latent structure under the one interface, against independent truths:
per-group closed-form KL against Monte Carlo, vmapped terms against a Python
loop, the bottom-up stack against a numpy forward pass, and a two-layer
linear-Gaussian hierarchy against its exact marginal and posterior."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import config as config_lib
from vae_jax import data, models, networks, objectives

from conftest import model_config

SHAPE = (8, 8, 1)


def _model(name: str, shape=SHAPE, levels=2, **fields):
  m = models.build(model_config(name, **fields), data.DataSpec(shape, levels))
  params = m.init(jax.random.key(0))
  # Move every parameter off its initial value (top-down heads start at zero).
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape)
                                     for p, k in zip(leaves, keys)])
  return m, params


def _binary_images(n, shape=SHAPE, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 2, (n,) + shape), jnp.float32)


MODELS = ["flat", "bottom_up", "top_down"]


@pytest.mark.parametrize("name", MODELS)
def test_closed_form_kl_per_group_matches_monte_carlo(name):
  """Each group's closed-form KL, averaged over draws, equals the mean of
  log q - log p over the same draws within 4 standard errors of their
  difference (k = 4000 draws of one example)."""
  m, params = _model(name)
  d = m.draws(params, _binary_images(1)[0], jax.random.key(2), 4000)
  assert set(d.z) == set(m.groups)
  for g, kl in d.kl_analytic_per_group().items():
    diff = np.asarray(d.kl_mc_per_group()[g] - kl, np.float64)
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff)) + 1e-4, (g, diff.mean())
  expected = {"flat": ["z"], "bottom_up": ["z2"], "top_down": ["z1", "z2", "z3"]}[name]
  assert sorted(d.kl) == expected and m.analytic_kl == (name != "bottom_up")


@pytest.mark.parametrize("name", MODELS)
def test_vmapped_terms_equal_a_python_loop(name):
  m, params = _model(name)
  batch, rng = _binary_images(3), jax.random.key(3)
  analytic = m.analytic_kl
  got = objectives.batch_terms(m, params, batch, rng, num_samples=2, analytic_kl=analytic)
  for i, r in enumerate(jax.random.split(rng, 3)):
    one = objectives.example_terms(m, params, batch[i], r, num_samples=2, analytic_kl=analytic)
    for key, value in one.items():
      np.testing.assert_allclose(got[key][i], value, rtol=1e-4, atol=1e-4, err_msg=key)


def _np_mlp(p, x, act=np.tanh):
  names = sorted(k for k in p if k.startswith("hidden_"))
  for n in names:
    x = act(x @ np.asarray(p[n]["kernel"], np.float64) + np.asarray(p[n]["bias"], np.float64))
  return x @ np.asarray(p["output"]["kernel"], np.float64) + np.asarray(p["output"]["bias"],
                                                                         np.float64)


def _np_gauss(h, z):
  mean, log_var = np.split(h, 2, axis=-1)
  log_var = 10 * np.tanh(log_var / 10)  # the model's soft clamp
  return stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(-1)


def test_bottom_up_matches_a_numpy_forward_pass():
  """log p(x|z1), log p(z1|z2), log p(z2), log q(z1|x), log q(z2|z1) of the
  draws, recomputed in float64 numpy from the parameters."""
  m, params = _model("bottom_up", activation="tanh")
  x = _binary_images(1)[0]
  d = m.draws(params, x, jax.random.key(4), 5)
  z1, z2 = (np.asarray(d.z[g], np.float64) for g in ("z1", "z2"))
  enc, dec = params["encoder"], params["decoder"]
  xf = np.asarray(x, np.float64).reshape(-1)
  np.testing.assert_allclose(d.log_qz["z1"], _np_gauss(_np_mlp(enc["x"], xf), z1), rtol=1e-4)
  np.testing.assert_allclose(d.log_qz["z2"], _np_gauss(_np_mlp(enc["up_0"], z1), z2), rtol=1e-4)
  np.testing.assert_allclose(d.log_pz["z2"], stats.norm.logpdf(z2).sum(-1), rtol=1e-4)
  np.testing.assert_allclose(d.log_pz["z1"], _np_gauss(_np_mlp(dec["down_0"], z2), z1),
                             rtol=1e-4)
  logits = _np_mlp(dec["x"], z1)
  log_px = (xf * logits - np.logaddexp(0, logits)).sum(-1)
  np.testing.assert_allclose(d.log_px_z, log_px, rtol=1e-4)


class LinearGaussianHierarchy:
  """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, D1), x | z1 ~ N(B z1 + b, σ² I): the
  joint of (z1, z2, x) is Gaussian, so p(x) and p(z | x) are exact (float64)."""

  def __init__(self, seed=0):
    c = model_config("bottom_up", likelihood="gaussian", gaussian_variance="scalar",
                encoder_hidden=(), decoder_hidden=(), latent_dims=(3, 2),
                stochastic_hidden=((),), latent_variance="constant")
    self.model = models.build(c, data.DataSpec((5,), None))
    params = self.model.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    self.A, self.a = rng.normal(size=(3, 2)), rng.normal(size=3)
    self.d1 = rng.uniform(0.3, 1.5, size=3)
    self.B, self.b, self.sigma2 = rng.normal(size=(5, 3)), rng.normal(size=5), 0.4
    dec = params["decoder"]
    dec["down_0"] = {"output": {"kernel": f32(self.A.T), "bias": f32(self.a)}}
    dec["log_var_0"] = f32(np.log(self.d1))
    dec["x"] = {"output": {"kernel": f32(self.B.T), "bias": f32(self.b)}}
    params["likelihood"] = {"log_var": f32(np.log(self.sigma2))}
    # An arbitrary q: random linear encoders.
    params["encoder"] = jax.tree.map(lambda p: f32(0.4 * rng.normal(size=p.shape)),
                                     params["encoder"])
    self.params = params
    # The joint Gaussian of v = (z1, z2, x).
    cov_z1 = self.A @ self.A.T + np.diag(self.d1)
    cov = np.zeros((10, 10))
    cov[:3, :3], cov[3:5, 3:5] = cov_z1, np.eye(2)
    cov[:3, 3:5], cov[3:5, :3] = self.A, self.A.T
    cov[5:, :3] = self.B @ cov[:3, :3]
    cov[5:, 3:5] = self.B @ cov[:3, 3:5]
    cov[:5, 5:] = cov[5:, :5].T
    cov[5:, 5:] = self.B @ cov_z1 @ self.B.T + self.sigma2 * np.eye(5)
    self.mean = np.concatenate([self.a, np.zeros(2), self.B @ self.a + self.b])
    self.cov = cov

  def good_q_params(self, inflate=1.5):
    """Encoders giving q(z1|x) ≈ p(z1|x) and q(z2|z1) ≈ p(z2|z1) (their
    diagonals, variances × `inflate`): a proposal that covers the posterior."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    c, mu = self.cov, self.mean
    m = c[:3, 5:] @ np.linalg.inv(c[5:, 5:])
    var1 = np.diag(c[:3, :3] - m @ c[5:, :3]) * inflate
    n = c[3:5, :3] @ np.linalg.inv(c[:3, :3])
    var2 = np.diag(c[3:5, 3:5] - n @ c[:3, 3:5]) * inflate
    enc = {"x": {"output": {"kernel": f32(np.concatenate([m.T, np.zeros((5, 3))], 1)),
                            "bias": f32(np.concatenate([mu[:3] - m @ mu[5:], np.log(var1)]))}},
           "up_0": {"output": {"kernel": f32(np.concatenate([n.T, np.zeros((3, 2))], 1)),
                               "bias": f32(np.concatenate([mu[3:5] - n @ mu[:3],
                                                           np.log(var2)]))}}}
    return dict(self.params, encoder=enc)

  def log_px(self, x):
    return stats.multivariate_normal.logpdf(x, self.mean[5:], self.cov[5:, 5:])

  def log_posterior(self, z, x):
    """log p(z1, z2 | x) at rows z = (z1, z2)."""
    s_zx, s_xx = self.cov[:5, 5:], self.cov[5:, 5:]
    mean = self.mean[:5] + s_zx @ np.linalg.solve(s_xx, x - self.mean[5:])
    cov = self.cov[:5, :5] - s_zx @ np.linalg.solve(s_xx, s_zx.T)
    return stats.multivariate_normal.logpdf(z, mean, cov)

  def sample_x(self, n, seed=1):
    return np.random.default_rng(seed).multivariate_normal(self.mean[5:], self.cov[5:, 5:], n)


@pytest.fixture(scope="module")
def lgh():
  return LinearGaussianHierarchy()


def test_linear_gaussian_hierarchy_identity_per_draw(lgh):
  """log w(z) + log q(z|x) - log p(z|x) = log p(x) at every draw of an
  arbitrary q: averaged over q, ELBO + KL(q ‖ p(z|x)) = log p(x), to float
  tolerance."""
  for x in lgh.sample_x(3):
    d = lgh.model.draws(lgh.params, jnp.asarray(x, jnp.float32), jax.random.key(5), 50)
    z = np.concatenate([np.asarray(d.z["z1"], np.float64), np.asarray(d.z["z2"], np.float64)],
                       axis=1)
    log_q = np.asarray(sum(d.log_qz.values()), np.float64)
    lhs = np.asarray(d.log_weights(), np.float64) + log_q - lgh.log_posterior(z, x)
    np.testing.assert_allclose(lhs, lgh.log_px(x), rtol=2e-5)


def test_linear_gaussian_hierarchy_exact_log_px_and_importance_sampling(lgh):
  """The model's own closed form equals the joint Gaussian's marginal, and the
  importance-sampled estimate (k = 5,000, a proposal covering the posterior)
  approaches it: within 4 Monte Carlo errors (delta method) plus 0.01 nats of
  O(1/k) bias, while the ELBO stays below it."""
  xs = lgh.sample_x(4)
  np.testing.assert_allclose(lgh.model.exact_log_px(lgh.params, xs), lgh.log_px(xs), rtol=1e-6)
  from vae_jax import evaluation
  for x in xs:
    est = evaluation.example_estimates(
        lgh.model, lgh.good_q_params(), jnp.asarray(x, jnp.float32), jax.random.key(6),
        elbo_samples=200, analytic_kl=False, num_importance_samples=5000, chunk=1000)
    err = math.sqrt(float(est["log_px_mc_var"]))
    assert abs(float(est["log_px"]) - lgh.log_px(x)) < 4 * err + 0.01, (est["log_px"], err)
    assert float(est["elbo"]) < lgh.log_px(x)


def test_top_down_starts_with_q_equal_to_p_and_samples_at_temperature():
  """Both heads start at zero: every group's KL is exactly 0 at initialisation.
  At temperature 0 a prior sample is deterministic, and given groups are kept."""
  m = models.build(model_config("top_down"), data.DataSpec(SHAPE, 2))
  params = m.init(jax.random.key(0))
  d = m.draws(params, _binary_images(1)[0], jax.random.key(1), 3)
  for g, kl in d.kl_analytic_per_group().items():
    np.testing.assert_allclose(kl, 0.0, atol=1e-6, err_msg=g)
  assert {g: v.shape[1:] for g, v in d.z.items()} == m.groups
  assert m.groups == {"z1": (2, 2, 2), "z2": (4, 4, 2), "z3": (4, 4, 2)}
  a = m.sample_latents(params, jax.random.key(1), 0.0)
  b = m.sample_latents(params, jax.random.key(2), 0.0)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  top = jnp.ones((2, 2, 2))
  assert np.array_equal(m.sample_latents(params, jax.random.key(3), 1.0, {"z1": top})["z1"], top)
  image = m.mean_image(params, a)
  assert image.shape == SHAPE and float(image.min()) >= 0 and float(image.max()) <= 1


@pytest.mark.parametrize("name", ["conv", "resnet"])
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_conv_networks_shapes_and_identity_blocks(name, shape):
  c = model_config("flat", encoder=name, decoder=name, channels=(4, 8), blocks_per_stage=2)
  enc, dec = networks.encoder(c, 6), networks.decoder(c, shape + (2,))
  x = jnp.ones((2,) + shape)
  pe = enc.init(jax.random.key(0), x[0])
  assert enc.apply(pe, x).shape == (2, 6)
  pd = dec.init(jax.random.key(1), jnp.ones((3,)))
  assert dec.apply(pd, jnp.ones((5, 3))).shape == (5,) + shape + (2,)
  block = networks.ResBlock(4)
  h = jax.random.normal(jax.random.key(2), (3, 3, 4))
  np.testing.assert_array_equal(block.apply(block.init(jax.random.key(3), h), h), h)


@pytest.mark.parametrize("name", ["conv", "resnet"])
def test_flat_model_with_conv_networks_has_a_finite_gradient(name):
  m, params = _model("flat", shape=(28, 28, 1), encoder=name, decoder=name, channels=(4, 8))
  batch = _binary_images(2, (28, 28, 1))
  obj = objectives.Objective()
  loss, grads = jax.value_and_grad(lambda p: obj.loss(m, p, batch, jax.random.key(0),
                                                      jnp.asarray(0))[0])(params)
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", ["flat", "bottom_up"])
def test_output_bias_from_the_data_mean_sets_the_decoders_marginal(name):
  """model.output_bias=data_mean: with the x-decoder's weights zeroed, the mean
  image is the training set's mean pixel (clipped), computed here in numpy
  from the raw pixels; the caller's parameters are not changed."""
  from vae_jax import train
  c = config_lib.default()
  c.model = model_config(name, likelihood="binomial", output_bias="data_mean")
  d = data.load(c.data, "binomial")
  m = models.build(c.model, d.spec)
  params = m.init(jax.random.key(0))
  before = jax.tree.map(np.copy, jax.device_get(params))
  biased = m.with_output_bias(params, train.output_bias_from_data(c.model, d))
  expected = np.clip(d.train.astype(np.float64).mean(0) / (d.raw_levels - 1), 1e-3, 1 - 1e-3)
  path = ("decoder",) if name == "flat" else ("decoder", "x")
  node = biased
  for key in path:
    node = node[key]
  for layer in node.values():
    layer["kernel"] = jnp.zeros_like(layer["kernel"])
  z = {g: jnp.ones(shape) for g, shape in m.groups.items()}
  np.testing.assert_allclose(m.mean_image(biased, z), expected, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  c.model.output_bias = "zero"
  assert train.output_bias_from_data(c.model, d) is None


def test_glorot_uniform_kernel_init():
  """model.kernel_init=glorot_uniform: U(±√(6/(fan_in + fan_out))) weights."""
  mlp = networks.MLP((300,), 100, "tanh", kernel_init="glorot_uniform")
  w = mlp.init(jax.random.key(0), jnp.zeros((784,)))["params"]["output"]["kernel"]
  bound = math.sqrt(6 / 400)
  assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
  np.testing.assert_allclose(np.std(w), bound / math.sqrt(3), rtol=0.02)


@pytest.mark.parametrize("spec", ["hierarchical_mnist.py:npz,small", "iwae_two_layer.py:npz,small",
                                  "cifar10.py:npz,small", "linear_gaussian_hierarchy.py:small"])
def test_new_configs_small_forms_train_end_to_end(tmp_path, spec):
  """scripts/train.py on each new config's small form (offline: a random .npz of
  the dataset's shape): it trains, and eval.json has per-group figures."""
  import json

  from conftest import train_cli
  rng = np.random.default_rng(0)
  shape = (32, 32, 3) if spec.startswith("cifar10") else (28, 28)
  path = tmp_path / "data.npz"
  np.savez(path, image=rng.integers(0, 256, (40,) + shape, dtype=np.uint8))
  r = train_cli(tmp_path / "run", f"--config=experiments/{spec}", f"--config.data.path={path}",
                "--config.train.progress_bar=False")
  assert r.returncode == 0, r.stderr[-3000:]
  test = json.loads((tmp_path / "run" / "eval.json").read_text())["test"]
  assert np.isfinite(test["nll"]["value"]) and test["groups"]
  assert sum(g["kl"] for g in test["groups"].values()) == pytest.approx(test["rate"], rel=1e-4)
  if spec.startswith("linear_gaussian"):
    lg = test["linear_gaussian"]
    assert lg["train_gap_to_ppca_maximum"] > -1e-4  # the maximum bounds every linear model
  if spec.startswith("cifar10"):
    assert test["nll"]["bits_per_dim"] == pytest.approx(
        test["nll"]["value"] / (32 * 32 * 3 * math.log(2)))


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_networks_keep_the_terms_float32_and_close(name):
  """train.compute_dtype=bfloat16 (model.computing_in): the networks' matmuls
  and convolutions run in bfloat16 (in the traced program), while the terms,
  the gradients and the parameters stay float32; the ELBO is the float32
  model's to bfloat16's precision (8 bits: 1 % here) and the gradient points
  the same way (cosine > 0.99), for one draw (per_draw) and for two."""
  m, params = _model(name)
  m16 = m.computing_in("bfloat16")
  assert m.compute_dtype == "float32" and m16.compute_dtype == "bfloat16"
  batch, rng = _binary_images(4), jax.random.key(4)

  def loss(model, p, k):
    t = objectives.batch_terms(model, p, batch, rng, num_samples=k, analytic_kl=False)
    return -jnp.mean(t["elbo"]), t["elbo"]

  jaxpr = str(jax.make_jaxpr(lambda p: loss(m16, p, 1))(params))
  assert "bf16" in jaxpr and "bf16" not in str(jax.make_jaxpr(lambda p: loss(m, p, 1))(params))
  for k in (1, 2):  # jitted: op by op, the convolutional models took 30 s
    (_, e32), g32 = jax.jit(jax.value_and_grad(lambda p: loss(m, p, k), has_aux=True))(params)
    (_, e16), g16 = jax.jit(jax.value_and_grad(lambda p: loss(m16, p, k), has_aux=True))(params)
    assert e16.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
    np.testing.assert_allclose(e16, e32, rtol=1e-2)
    a = np.concatenate([np.ravel(g) for g in jax.tree.leaves(g32)])
    b = np.concatenate([np.ravel(g) for g in jax.tree.leaves(g16)])
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
