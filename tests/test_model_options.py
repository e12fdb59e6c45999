"""Model options beyond the lecture's MLP: depth, activations, layernorm, batchnorm, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mlp import checkpoint
from jax_mlp.config import load_config
from jax_mlp.errors import UserError
from jax_mlp.model import Arch, apply, forward, init_model_state, init_params, num_params, param_shapes, train_loss
from jax_mlp.train import train_and_evaluate
from conftest import ROOT

X = np.random.default_rng(0).integers(0, 27, size=(64, 8)).astype(np.int32)
Y = np.random.default_rng(1).integers(0, 27, size=64).astype(np.int32)


def test_default_arch_is_the_lecture_model():
    assert list(param_shapes(27, 3, 10, 200)) == ["C", "W1", "b1", "W2", "b2"]
    assert Arch().plain and not Arch(norm="batchnorm").plain


def test_parameter_counts_of_deeper_and_normalised_models():
    # lecture part 5's flat context-8 MLP with batchnorm: 22,097 parameters
    bn = Arch(norm="batchnorm")
    assert num_params(init_params(jax.random.key(0), 27, 8, 10, 200, "kaiming", bn)) == 22097
    deep = Arch(n_layers=3, norm="layernorm", activation="relu")
    shapes = param_shapes(27, 8, 10, 64, deep)
    assert shapes["W2"] == (64, 64) and shapes["W3"] == (64, 64) and shapes["W4"] == (64, 27)
    assert {"g1", "s1", "b1", "g3"} <= set(shapes)
    assert "b1" not in param_shapes(27, 8, 10, 64, bn)  # no bias before batchnorm


def test_batchnorm_eval_uses_the_running_statistics():
    arch = Arch(norm="batchnorm")
    params = init_params(jax.random.key(0), 27, 8, 10, 32, "kaiming", arch)
    state = {"mean1": jnp.full(32, 0.5), "var1": jnp.full(32, 4.0)}
    logits = forward(params, X, arch, state)
    # by hand, with the running mean and variance
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    z = p["C"][X].reshape(64, -1) @ p["W1"]
    h = np.tanh((z - 0.5) / np.sqrt(4.0 + 1e-5) * p["g1"] + p["s1"])
    np.testing.assert_allclose(np.asarray(logits), h @ p["W2"] + p["b2"], rtol=1e-4, atol=1e-4)
    # eval mode does not depend on the batch: one example alone gets the same logits
    np.testing.assert_allclose(np.asarray(forward(params, X[:1], arch, state)), np.asarray(logits[:1]), rtol=1e-5)
    # train mode uses batch statistics and moves the running ones by 0.001
    _, new_state = apply(params, X, arch, state, train=True, key=jax.random.key(0))
    batch_mean = (z).mean(0)
    np.testing.assert_allclose(np.asarray(new_state["mean1"]), 0.999 * 0.5 + 0.001 * batch_mean, rtol=1e-4)


def test_dropout_only_while_training():
    arch = Arch(n_layers=2, dropout=0.5)
    params = init_params(jax.random.key(0), 27, 8, 10, 32, "kaiming", arch)
    a = train_loss(params, {}, X, Y, jax.random.key(1), arch)[0]
    b = train_loss(params, {}, X, Y, jax.random.key(2), arch)[0]
    assert float(a) != float(b)  # its own key: different masks
    e1, e2 = forward(params, X, arch), forward(params, X, arch)
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
    np.testing.assert_allclose(np.asarray(e1), np.asarray(forward(params, X, Arch(n_layers=2))), rtol=1e-6)


@pytest.mark.parametrize("overrides", [
    {"model.norm": "batchnorm", "data.block_size": "8"},
    {"model.n_layers": "2", "model.norm": "layernorm", "model.activation": "gelu", "model.dropout": "0.1"},
    {"model.n_layers": "2", "model.activation": "relu", "model.init": "part3"},
])
def test_options_train_checkpoint_and_resume_exactly(overrides, names_path, tmp_path):
    base = {"data.path": str(names_path), "train.steps": "400", "train.log_every": "200", "train.num_samples": "0",
            "model.init": "kaiming", "model.n_hidden": "64", "train.checkpoint_every": "200", **overrides}
    cfg = load_config(ROOT / "configs" / "quick.toml", base)
    full = train_and_evaluate(cfg, tmp_path / "full", log=lambda _: None).summary
    assert full["dev_loss"] < full["initial_dev_loss"] - 0.3
    part = load_config(ROOT / "configs" / "quick.toml", {**base, "train.steps": "250"})
    train_and_evaluate(part, tmp_path / "part", log=lambda _: None)
    resumed = train_and_evaluate(cfg, tmp_path / "part", resume=True, log=lambda _: None).summary
    assert resumed["dev_loss"] == full["dev_loss"]
    ck = checkpoint.load(tmp_path / "full")
    assert set(ck.model_state) == set(init_model_state(64, Arch.of(cfg.model)))


@pytest.mark.parametrize("key, value, message", [
    ("model.n_layers", "0", "model.n_layers must be >= 1"),
    ("model.activation", "sigmoid", "model.activation must be one of tanh, relu, gelu"),
    ("model.norm", "groupnorm", "model.norm must be one of none, layernorm, batchnorm"),
    ("model.dropout", "1.0", "model.dropout must be in [0, 1)"),
    ("model.init", "xavier", "model.init must be one of lecture, part3, kaiming"),
])
def test_model_option_errors(key, value, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
        load_config(None, {key: value})


@pytest.mark.parametrize("name, params", [
    ("lecture", 11897), ("lecture_part3_init", 11897), ("lecture_part3_kaiming", 11897),
    ("lecture_part3_batchnorm", 12097), ("lecture_part5_context8", 22097),
])
def test_lecture_table_configs(name, params):
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    shapes = param_shapes(27, cfg.data.block_size, cfg.model.n_embd, cfg.model.n_hidden, Arch.of(cfg.model))
    assert sum(int(np.prod(s)) for s in shapes.values()) == params
    assert cfg.train.steps == 200000 and cfg.optimizer.name == "sgd"
