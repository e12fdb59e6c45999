"""The model against the lecture's numbers and an independent numpy reference (lecture part 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_mlp.model import forward, init_params, loss, loss_fn, num_params


def test_parameter_counts_of_the_lecture_models():
    key = jax.random.key(0)
    assert num_params(init_params(key, 27, 3, 10, 200)) == 11897
    assert num_params(init_params(key, 27, 3, 2, 100)) == 3481


def test_param_shapes():
    p = init_params(jax.random.key(0), 27, 4, 5, 64)
    assert {k: v.shape for k, v in p.items()} == {
        "C": (27, 5), "W1": (20, 64), "b1": (64,), "W2": (64, 27), "b2": (27,)}


def test_lecture_init_is_standard_normal_and_kaiming_is_scaled():
    key = jax.random.key(1)
    lec = init_params(key, 27, 3, 10, 200, "lecture")
    kai = init_params(key, 27, 3, 10, 200, "kaiming")
    assert float(jnp.std(lec["W1"])) == pytest.approx(1.0, rel=0.05)
    assert float(jnp.std(lec["b2"])) > 0.5
    np.testing.assert_allclose(kai["W1"], lec["W1"] * (5 / 3) / 30**0.5, rtol=1e-6)
    np.testing.assert_allclose(kai["W2"], lec["W2"] * 0.01, rtol=1e-6)
    np.testing.assert_allclose(kai["b1"], lec["b1"] * 0.01, rtol=1e-6)
    assert not np.any(kai["b2"])
    np.testing.assert_array_equal(kai["C"], lec["C"])


def numpy_loss_and_grads(p, X, Y):
    """Forward and a backward derived by hand, as in lecture part 4, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    n = X.shape[0]
    emb = p["C"][X]
    embcat = emb.reshape(n, -1)
    hpre = embcat @ p["W1"] + p["b1"]
    h = np.tanh(hpre)
    logits = h @ p["W2"] + p["b2"]
    shifted = logits - logits.max(1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    loss = -np.log(probs[np.arange(n), Y]).mean()
    dlogits = probs.copy()
    dlogits[np.arange(n), Y] -= 1
    dlogits /= n
    grads = {"W2": h.T @ dlogits, "b2": dlogits.sum(0)}
    dhpre = (1 - h**2) * (dlogits @ p["W2"].T)
    grads["W1"] = embcat.T @ dhpre
    grads["b1"] = dhpre.sum(0)
    demb = (dhpre @ p["W1"].T).reshape(emb.shape)
    dC = np.zeros_like(p["C"])
    np.add.at(dC, X, demb)
    grads["C"] = dC
    return loss, grads


@pytest.mark.parametrize("init", ["lecture", "kaiming"])
def test_loss_and_every_gradient_match_numpy_reference(init):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 27, size=(64, 3)).astype(np.int32)
    Y = rng.integers(0, 27, size=64).astype(np.int32)
    params = init_params(jax.random.key(3), 27, 3, 10, 200, init)
    if init == "lecture":  # scale down so tanh is not saturated and every gradient is exercised
        params = {k: v * 0.2 for k, v in params.items()}
    ref_loss, ref_grads = numpy_loss_and_grads(params, X, Y)
    value, grads = jax.value_and_grad(loss_fn)(params, X, Y)
    assert float(value) == pytest.approx(ref_loss, rel=1e-5)
    for k in params:
        scale = np.abs(ref_grads[k]).max()
        np.testing.assert_allclose(np.asarray(grads[k]), ref_grads[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k)


def test_reference_would_catch_a_wrong_gradient():
    # The comparison above is sensitive: a 1% error in one entry fails it.
    rng = np.random.default_rng(1)
    X = rng.integers(0, 27, size=(16, 3)).astype(np.int32)
    Y = rng.integers(0, 27, size=16).astype(np.int32)
    params = init_params(jax.random.key(0), 27, 3, 10, 50, "kaiming")
    _, ref = numpy_loss_and_grads(params, X, Y)
    grads = jax.grad(loss_fn)(params, X, Y)
    wrong = np.asarray(grads["W1"]).copy()
    i = np.unravel_index(np.abs(wrong).argmax(), wrong.shape)
    wrong[i] *= 1.01
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, ref["W1"], rtol=1e-5, atol=1e-5 * np.abs(ref["W1"]).max())


def test_one_sgd_step_is_params_minus_lr_times_grads():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 27, size=(32, 3)).astype(np.int32)
    Y = rng.integers(0, 27, size=32).astype(np.int32)
    params = init_params(jax.random.key(4), 27, 3, 10, 200)
    tx = optax.sgd(0.1)
    grads = jax.grad(loss_fn)(params, X, Y)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - 0.1 * grads[k], rtol=1e-6, atol=1e-7)
    # nothing was mutated in place
    assert not np.array_equal(np.asarray(new["W1"]), np.asarray(params["W1"]))


def test_jit_and_no_jit_agree():
    rng = np.random.default_rng(5)
    X = rng.integers(0, 27, size=(128, 3)).astype(np.int32)
    Y = rng.integers(0, 27, size=128).astype(np.int32)
    params = init_params(jax.random.key(5), 27, 3, 10, 200)
    with jax.disable_jit():
        eager = float(loss_fn(params, X, Y))
        eager_grads = jax.grad(loss_fn)(params, X, Y)
    jitted_grads = jax.jit(jax.grad(loss_fn))(params, X, Y)
    assert float(loss(params, X, Y)) == pytest.approx(eager, rel=1e-6)
    for k in params:
        np.testing.assert_allclose(jitted_grads[k], eager_grads[k], rtol=1e-5, atol=1e-6)


def test_initial_loss_of_uniform_logits_is_log_vocab():
    params = init_params(jax.random.key(0), 27, 3, 10, 200, "kaiming")
    params["W2"] = jnp.zeros_like(params["W2"])
    X = jnp.zeros((10, 3), jnp.int32)
    assert float(loss(params, X, jnp.arange(10))) == pytest.approx(np.log(27), rel=1e-6)
    assert forward(params, X).shape == (10, 27)


def test_forward_logits_match_numpy():
    rng = np.random.default_rng(7)
    X = rng.integers(0, 27, size=(20, 3)).astype(np.int32)
    params = init_params(jax.random.key(9), 27, 3, 10, 200, "kaiming")
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    ref = np.tanh(p["C"][X].reshape(20, -1) @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    np.testing.assert_allclose(np.asarray(forward(params, X)), ref, rtol=1e-5, atol=1e-5)
