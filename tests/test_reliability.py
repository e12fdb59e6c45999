"""Interruptions, resumes, divergence and damaged files: nothing lost, nothing silently wrong."""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from jax_mlp import checkpoint
from jax_mlp import train as train_cli
from jax_mlp.config import load_config
from jax_mlp.data import make_dataset, read_words
from jax_mlp.errors import UserError
from jax_mlp.train import Diverged, evaluate, train_and_evaluate
from conftest import ROOT

QUICK = ROOT / "configs" / "quick.toml"


def cfg_for(names_path, out, **extra):
    overrides = {"data.path": str(names_path), "train.steps": "700", "train.log_every": "200",
                 "train.checkpoint_every": "300", "model.n_hidden": "64", "train.num_samples": "0",
                 "train.out_dir": str(out), "schedule.name": "piecewise_constant_schedule",
                 "schedule.boundaries_and_scales": "{500 = 0.1}"}
    overrides.update({k: str(v) for k, v in extra.items()})
    return load_config(QUICK, overrides)


def final_params(run_dir):
    return checkpoint.load(run_dir).params


@pytest.fixture(scope="module")
def uninterrupted(names_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    run = train_and_evaluate(cfg_for(names_path, out), out, log=lambda _: None)
    return out, run.summary


@pytest.mark.parametrize("k", [1, 137, 300, 512])
def test_stop_at_k_then_resume_is_bit_identical(k, names_path, tmp_path, uninterrupted):
    full_dir, full = uninterrupted
    out = tmp_path / "run"
    train_and_evaluate(cfg_for(names_path, out, **{"train.steps": k}), out, log=lambda _: None)
    assert checkpoint.load(out).step == k
    resumed = train_and_evaluate(cfg_for(names_path, out), out, resume=True, log=lambda _: None).summary
    assert resumed["resumed_from_step"] == k
    for split in ("train", "dev", "test"):
        assert resumed[f"{split}_loss"] == full[f"{split}_loss"]
    a, b = final_params(out), final_params(full_dir)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 700


def test_checkpoints_roll_and_keep_the_best(names_path, tmp_path):
    out = tmp_path / "run"
    train_and_evaluate(cfg_for(names_path, out, **{"train.steps": 1500, "train.checkpoint_every": 200,
                                                   "train.keep_checkpoints": 2}), out, log=lambda _: None)
    assert [s for s, _ in checkpoint.step_files(out)] == [1400, 1500]
    best = checkpoint.load(out / "checkpoints" / "best.npz")
    ds = make_dataset(read_words(names_path), 3)
    dev = lambda ck: evaluate({k: jnp.asarray(v) for k, v in ck.params.items()}, ds.X["dev"], ds.Y["dev"])
    assert best.extra["dev_loss"] == pytest.approx(dev(best), rel=1e-6)  # it records its own dev loss
    for _, path in checkpoint.step_files(out):  # and none of the kept ones is better
        assert best.extra["dev_loss"] <= dev(checkpoint.load(path)) + 1e-9
    assert best.step in range(200, 1501, 200) or best.step == 1500


def test_resume_refuses_a_change_that_alters_the_math(names_path, tmp_path, capsys):
    out = tmp_path / "run"
    train_and_evaluate(cfg_for(names_path, out, **{"train.steps": 100}), out, log=lambda _: None)
    for flag, value in [("optimizer.learning_rate", "0.5"), ("model.n_hidden", "32"), ("train.seed", "9")]:
        with pytest.raises(SystemExit) as e:
            train_cli.main(["--train.out_dir", str(out), "--resume", f"--{flag}", value])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"--resume cannot change {flag}" in err
    # changing the step count is fine, and continues from the checkpoint
    train_cli.main(["--train.out_dir", str(out), "--resume", "--train.steps", "150", "--quiet"])
    assert checkpoint.load(out).step == 150


def test_resume_without_a_checkpoint_and_new_run_over_old(names_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--train.out_dir", str(tmp_path), "--resume"])
    assert e.value.code == 2 and "has no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--train.out_dir", str(tmp_path), "--resume", "--overwrite"])
    assert e.value.code == 2 and "contradict" in capsys.readouterr().err


def test_divergence_stops_names_the_steps_and_keeps_the_last_good_checkpoint(names_path, tmp_path):
    out = tmp_path / "run"
    # a sane rate for 10 steps, then an absurd one
    cfg = cfg_for(names_path, out, **{"schedule.boundaries_and_scales": "{10 = 1e38}", "train.checkpoint_every": 1,
                                      "train.steps": 50, "train.log_every": 1})
    with pytest.raises(Diverged, match=r"training diverged in steps (\d+)-\1 \((loss nan|loss inf|parameters overflowed)\); "
                                       r"the last good checkpoint \(step \d+\) is kept .* lower optimizer.learning_rate"):
        train_and_evaluate(cfg, out, log=lambda _: None)
    ck = checkpoint.load(out)
    assert 10 <= ck.step < 50 and all(np.isfinite(v).all() for v in ck.params.values())


def run_cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "jax_mlp.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc, prefix, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r}")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_a_checkpoint_and_resume_matches(sig, code, names_path, tmp_path):
    out = tmp_path / "run"
    args = ["--config", str(QUICK), "--data.path", str(names_path), "--train.out_dir", str(out),
            "--train.steps", "400000", "--train.log_every", "2000", "--train.checkpoint_every", "0",
            "--model.n_hidden", "32", "--train.num_samples", "0"]
    proc = run_cli(*args)
    wait_for_line(proc, "step   2000/")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Resume with: python -m jax_mlp.train --train.out_dir" in err and "Traceback" not in err
    k = checkpoint.load(out).step
    assert 2000 <= k < 400000
    # resume to a nearby end, and compare with an uninterrupted run to the same end
    end = str(k + 123)
    done = subprocess.run([sys.executable, "-m", "jax_mlp.train", "--train.out_dir", str(out), "--resume",
                           "--train.steps", end, "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref"
    train_and_evaluate(load_config(QUICK, {**{k[2:]: v for k, v in zip(args[2::2], args[3::2])}, "train.out_dir": str(ref),
                                           "train.steps": end}), ref, log=lambda _: None)
    a, b = final_params(out), final_params(ref)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_kill_9_leaves_a_loadable_checkpoint(names_path, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("--config", str(QUICK), "--data.path", str(names_path), "--train.out_dir", str(out),
                   "--train.steps", "400000", "--train.log_every", "500", "--train.checkpoint_every", "500",
                   "--model.n_hidden", "32", "--train.num_samples", "0")
    wait_for_line(proc, "step   3000/")
    proc.kill()  # SIGKILL, at whatever point it has reached, checkpoint writes included
    proc.wait(timeout=60)
    ck = checkpoint.load(out)
    assert ck.step >= 2500
    # a write killed half way leaves only a temporary file, which is never read
    (out / "checkpoints" / ".step_999999999.npz.abc.tmp").write_bytes(b"PK\x03\x04 half a file")
    done = subprocess.run([sys.executable, "-m", "jax_mlp.train", "--train.out_dir", str(out), "--resume",
                           "--train.steps", str(ck.step + 100), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(out).step == ck.step + 100
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_damaged_newest_checkpoint_falls_back_to_the_previous(names_path, tmp_path):
    out = tmp_path / "run"
    train_and_evaluate(cfg_for(names_path, out, **{"train.steps": 600, "train.checkpoint_every": 200}), out,
                       log=lambda _: None)
    newest = checkpoint.step_files(out)[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    warnings = []
    assert checkpoint.load(out, warn=warnings.append).step == 400
    assert "skipping unreadable checkpoint" in warnings[0]


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable jax_mlp checkpoint"),
    (lambda p: p.write_bytes(os.urandom(5000)), "not a readable jax_mlp checkpoint"),
    (lambda p: p.write_bytes(b""), "not a readable jax_mlp checkpoint"),
])
def test_damaged_checkpoint_files_are_clear_errors(damage, message, names_path, tmp_path):
    out = tmp_path / "run"
    train_and_evaluate(cfg_for(names_path, out, **{"train.steps": 10}), out, log=lambda _: None)
    path = checkpoint.step_files(out)[-1][1]
    damage(path)
    with pytest.raises(UserError, match=message):
        checkpoint.load(path)


def test_checkpoint_of_another_model_shape_is_refused(names_path, tmp_path):
    out = tmp_path / "run"
    run = train_and_evaluate(cfg_for(names_path, out, **{"train.steps": 10}), out, log=lambda _: None)
    other = load_config(QUICK, {"model.n_hidden": "200", "data.path": str(names_path)})
    bad = tmp_path / "other.npz"
    checkpoint.save(bad, run.state.params, run.state.opt_state, 10, run.state.key, run.dataset.vocab, other, 32)
    with pytest.raises(UserError, match="parameter W1 has shape \\(30, 64\\).*needs \\(30, 200\\)"):
        checkpoint.load(bad)


def test_out_dir_not_writable(names_path, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in [str(blocker / "sub"), "/proc/jax_mlp_cannot_write_here"]:
        with pytest.raises(SystemExit) as e:
            train_cli.main(["--config", str(QUICK), "--data.path", str(names_path), "--train.out_dir", out])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "cannot write to train.out_dir" in err, err


def test_a_10_mb_line_is_refused_and_astral_characters_work(tmp_path, capsys):
    big = tmp_path / "big.txt"
    big.write_text("emma\n" + "a" * 10_000_000 + "\nava\n")
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--data.path", str(big), "--train.out_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "item 2 is 10,000,000 characters long" in err
    astral = tmp_path / "astral.txt"
    astral.write_text("\n".join(["😀ab", "a😀", "𝔸𝔹", "ab", "ba", "abab", "bb", "aa", "b𝔸", "a"] * 3), encoding="utf-8")
    cfg = load_config(QUICK, {"data.path": str(astral), "train.steps": "20", "train.log_every": "10",
                              "train.num_samples": "5"})
    run = train_and_evaluate(cfg, tmp_path / "astral_run", log=lambda _: None)
    assert {"😀", "𝔸", "𝔹"} <= set(run.dataset.vocab.itos)
    assert np.isfinite(run.summary["dev_loss"])
    assert checkpoint.load(tmp_path / "astral_run").vocab == run.dataset.vocab
