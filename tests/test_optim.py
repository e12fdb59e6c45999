"""Optimizers, schedules and gradient transformations from config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_mlp.config import OptimizerConfig, ScheduleConfig, TransformsConfig, load_config
from jax_mlp.errors import UserError
from jax_mlp.optim import build_optimizer, make_tx, optimizer_names
from jax_mlp.train import train_and_evaluate
from conftest import ROOT

# name, learning rate, extra keywords
OPTIMIZERS = [
    ("sgd", 0.1, {}), ("sgd", 0.05, {"momentum": 0.9, "nesterov": True}), ("adam", 1e-2, {}),
    ("adamw", 1e-2, {"weight_decay": 1e-4}), ("adamax", 1e-2, {}), ("nadam", 1e-2, {}), ("radam", 1e-2, {}),
    ("adabelief", 1e-2, {}), ("yogi", 1e-2, {}), ("lion", 1e-3, {}), ("rmsprop", 1e-2, {}),
    ("adagrad", 0.1, {}), ("adafactor", 1e-2, {}), ("lamb", 1e-2, {}), ("lars", 0.5, {}), ("novograd", 1e-2, {}),
]


@pytest.mark.parametrize("name, lr, kwargs", OPTIMIZERS, ids=[f"{o[0]}{'+' if o[2] else ''}" for o in OPTIMIZERS])
def test_every_optimizer_lowers_the_dev_loss(name, lr, kwargs):
    overrides = {"optimizer.name": name, "optimizer.learning_rate": str(lr), "train.steps": "400",
                 "train.log_every": "400", "train.num_samples": "0", "model.init": "kaiming"}
    overrides.update({f"optimizer.{k}": str(v).lower() for k, v in kwargs.items()})
    cfg = load_config(ROOT / "configs" / "quick.toml", overrides)
    assert cfg.optimizer.kwargs == kwargs
    s = train_and_evaluate(cfg, log=lambda _: None).summary
    assert s["dev_loss"] < s["initial_dev_loss"] - 0.2, (name, s["initial_dev_loss"], s["dev_loss"])


def test_the_named_optimizers_are_all_accepted():
    names = optimizer_names()
    for name, _, _ in OPTIMIZERS:
        assert name in names


PARAMS = {"C": jnp.ones((3, 2)), "W1": jnp.ones((4, 5)), "b1": jnp.ones(5), "W2": jnp.ones((5, 3)), "b2": jnp.ones(3)}
ZERO = jax.tree.map(jnp.zeros_like, PARAMS)


def test_decoupled_weight_decay_skips_biases_and_embedding_unless_asked():
    tx = make_tx(OptimizerConfig("sgd", 0.5), ScheduleConfig("none", {}), TransformsConfig(weight_decay=0.1))
    updates, _ = tx.update(ZERO, tx.init(PARAMS), PARAMS)
    assert np.allclose(updates["W1"], -0.05) and np.allclose(updates["W2"], -0.05)
    assert not np.any(updates["b1"]) and not np.any(updates["b2"]) and not np.any(updates["C"])
    tx = make_tx(OptimizerConfig("sgd", 0.5), ScheduleConfig("none", {}),
                 TransformsConfig(weight_decay=0.1, decay_biases=True, decay_embedding=True))
    updates, _ = tx.update(ZERO, tx.init(PARAMS), PARAMS)
    assert all(np.allclose(u, -0.05) for u in jax.tree.leaves(updates))


def test_weight_decay_keeps_the_optimizer_direction():
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), PARAMS)
    plain = make_tx(OptimizerConfig("adam", 0.01), ScheduleConfig("none", {}))
    decayed = make_tx(OptimizerConfig("adam", 0.01), ScheduleConfig("none", {}), TransformsConfig(weight_decay=0.1))
    u_plain, _ = plain.update(grads, plain.init(PARAMS), PARAMS)
    u_dec, _ = decayed.update(grads, decayed.init(PARAMS), PARAMS)
    np.testing.assert_allclose(u_dec["b1"], u_plain["b1"], rtol=1e-6)
    np.testing.assert_allclose(u_dec["W1"], u_plain["W1"] - 0.01 * 0.1 * PARAMS["W1"], rtol=1e-6)


def test_clipping_bounds_the_global_norm():
    grads = jax.tree.map(lambda p: jnp.full_like(p, 10.0), PARAMS)
    tx = make_tx(OptimizerConfig("sgd", 1.0), ScheduleConfig("none", {}), TransformsConfig(clip_global_norm=1.0))
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_gradient_accumulation_updates_every_k_steps():
    tx = make_tx(OptimizerConfig("sgd", 1.0), ScheduleConfig("none", {}), TransformsConfig(accumulate_steps=3))
    state = tx.init(PARAMS)
    params = PARAMS
    for i, g in enumerate([1.0, 2.0, 6.0]):
        updates, state = tx.update(jax.tree.map(lambda p: jnp.full_like(p, g), PARAMS), state, params)
        params = optax.apply_updates(params, updates)
        if i < 2:
            np.testing.assert_array_equal(params["W1"], PARAMS["W1"])
    np.testing.assert_allclose(params["W1"], PARAMS["W1"] - 3.0)  # the mean of 1, 2, 6


@pytest.mark.parametrize("name, kwargs, lr_at", [
    ("constant_schedule", {}, {0: 0.1, 500: 0.1}),
    ("piecewise_constant_schedule", {"boundaries_and_scales": {100: 0.1}}, {99: 0.1, 100: 0.01}),
    ("exponential_decay", {"transition_steps": 100, "decay_rate": 0.5}, {0: 0.1, 100: 0.05, 200: 0.025}),
    ("cosine_decay_schedule", {"decay_steps": 100}, {0: 0.1, 50: 0.05, 100: 0.0}),
    ("warmup_cosine_decay_schedule", {"init_value": 0.0, "warmup_steps": 10, "decay_steps": 110},
     {0: 0.0, 5: 0.05, 10: 0.1, 110: 0.0}),
    ("linear_schedule", {"init_value": 0.1, "end_value": 0.0, "transition_steps": 100}, {50: 0.05, 100: 0.0}),
])
def test_schedules_by_optax_name(name, kwargs, lr_at):
    _, at = build_optimizer(OptimizerConfig("sgd", 0.1), ScheduleConfig(name, kwargs))
    for step, lr in lr_at.items():
        assert at(step) == pytest.approx(lr, abs=1e-7), (name, step)


def test_accumulation_slows_the_schedule_to_updates():
    _, at = build_optimizer(OptimizerConfig("sgd", 0.1), ScheduleConfig("piecewise_constant_schedule",
                            {"boundaries_and_scales": {10: 0.1}}), TransformsConfig(accumulate_steps=4))
    assert at(39) == pytest.approx(0.1) and at(40) == pytest.approx(0.01)


def test_transform_config_errors():
    with pytest.raises(UserError, match="unknown config key 'transforms.clip'"):
        load_config(None, {"transforms.clip": "1.0"})
    with pytest.raises(UserError, match="transforms.weight_decay must be >= 0"):
        load_config(None, {"transforms.weight_decay": "-1"})
    with pytest.raises(UserError, match="transforms.accumulate_steps must be >= 1"):
        load_config(None, {"transforms.accumulate_steps": "0"})


def test_transforms_train_end_to_end():
    cfg = load_config(ROOT / "configs" / "quick.toml", {
        "train.steps": "300", "train.log_every": "300", "train.num_samples": "0", "transforms.clip_global_norm": "1.0",
        "transforms.weight_decay": "1e-3", "transforms.accumulate_steps": "2", "optimizer.name": "adam",
        "optimizer.learning_rate": "1e-2"})
    s = train_and_evaluate(cfg, log=lambda _: None).summary
    assert s["dev_loss"] < s["initial_dev_loss"]


def test_weight_decay_leaves_norm_gains_and_shifts_alone():
    params = {**PARAMS, "g1": jnp.ones(5), "s1": jnp.ones(5)}
    tx = make_tx(OptimizerConfig("sgd", 0.5), ScheduleConfig("none", {}), TransformsConfig(weight_decay=0.1))
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert not np.any(updates["g1"]) and not np.any(updates["s1"]) and np.allclose(updates["W1"], -0.05)
