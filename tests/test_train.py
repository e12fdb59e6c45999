"""Training through the real code path, on shrunken configs."""

import math

import jax
import numpy as np
import optax
import pytest

from jax_mlp import checkpoint
from jax_mlp.config import load_config
from jax_mlp.train import train_and_evaluate, _boundaries
from conftest import ROOT


def small(**overrides):
    base = {"train.steps": "300", "train.log_every": "100", "model.n_hidden": "64", "train.num_samples": "0",
            "schedule.name": "none"}
    base.update({k: str(v) for k, v in overrides.items()})
    return load_config(ROOT / "configs" / "quick.toml", base)


def quiet(_):
    pass


def params_of(run):
    return {k: np.asarray(v) for k, v in run.state.params.items()}


def test_same_seed_gives_bit_identical_params_and_another_seed_does_not():
    a = params_of(train_and_evaluate(small(**{"train.seed": 7}), log=quiet))
    b = params_of(train_and_evaluate(small(**{"train.seed": 7}), log=quiet))
    c = params_of(train_and_evaluate(small(**{"train.seed": 8}), log=quiet))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_chunking_does_not_change_the_math():
    # Log points split the run into device loops of different lengths; batches depend
    # only on (seed, step), so the params must be bit-identical however it is split.
    one = params_of(train_and_evaluate(small(**{"train.log_every": "300"}), log=quiet))
    many = params_of(train_and_evaluate(small(**{"train.log_every": "7", "train.eval_every": "50"}), log=quiet))
    for k in one:
        np.testing.assert_array_equal(one[k], many[k])


def test_training_lowers_the_loss_and_reports_every_split():
    run = train_and_evaluate(small(**{"train.steps": "1000"}), log=quiet)
    s = run.summary
    assert s["initial_train_loss"] > s["train_loss"]
    for split in ("train", "dev", "test"):
        assert math.isfinite(s[f"{split}_loss"]) and s[f"{split}_loss"] < math.log(27)
    assert s["steps"] == 1000 and s["num_params"] == 27 * 10 + 30 * 64 + 64 + 64 * 27 + 27


def test_overfit_config_ends_within_001_of_its_floor_and_never_below(names_path):
    cfg = load_config(ROOT / "configs" / "overfit_batch.toml", {"data.path": str(names_path)})
    lines = []
    run = train_and_evaluate(cfg, log=lines.append)
    s = run.summary
    floor = 5 * math.log(5) / 32
    assert s["loss_floor"] == pytest.approx(floor, abs=1e-9)
    assert s["num_params"] == 3481
    assert s["initial_train_loss"] > 10  # the lecture's N(0,1) init starts around 17
    assert floor <= s["train_loss"] <= floor + 0.01
    assert s["dev_loss"] is None and s["test_loss"] is None


def test_lecture_schedule_drops_the_learning_rate_at_step_100k():
    from jax_mlp.optim import build_optimizer

    cfg = load_config(ROOT / "configs" / "lecture.toml")
    _, lr_at = build_optimizer(cfg.optimizer, cfg.schedule)
    assert lr_at(0) == pytest.approx(0.1) and lr_at(99_999) == pytest.approx(0.1)
    assert lr_at(100_000) == pytest.approx(0.01) and lr_at(199_999) == pytest.approx(0.01)


def test_any_optax_transformation_from_python():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
    run = train_and_evaluate(small(), tx=tx, log=quiet)
    assert run.summary["train_loss"] < run.summary["initial_train_loss"]
    assert run.summary["final_learning_rate"] is None


def test_adam_config_is_adamw():
    cfg = load_config(ROOT / "configs" / "adam.toml", {"train.steps": "200", "train.log_every": "100"})
    assert cfg.optimizer.name == "adamw"
    run = train_and_evaluate(cfg, log=quiet)
    assert run.summary["train_loss"] < run.summary["initial_train_loss"]


def test_checkpoint_round_trip(tmp_path):
    cfg = small()
    run = train_and_evaluate(cfg, tmp_path / "run", log=quiet)
    ck = checkpoint.load(tmp_path / "run")
    assert ck.step == 300 and ck.config == cfg and ck.vocab == run.dataset.vocab
    for k, v in run.state.params.items():
        np.testing.assert_array_equal(ck.params[k], np.asarray(v))
    leaves = jax.tree_util.tree_leaves(run.state.opt_state)
    assert len(ck.opt_leaves) == len(leaves)
    np.testing.assert_array_equal(ck.key_data, np.asarray(jax.random.key_data(run.state.key)))


def test_log_and_eval_boundaries():
    assert _boundaries(10, 3, 0) == [3, 6, 9, 10]
    assert _boundaries(10, 4, 5) == [4, 5, 8, 10]
    assert _boundaries(0, 5, 0) == []
