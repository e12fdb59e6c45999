"""The command line as a user meets it: real processes, real files, one-line errors."""

import json
import math
import os
import subprocess
import sys

import pytest

from jax_mlp import train as train_cli
from jax_mlp import sample as sample_cli
from jax_mlp.config import Config, load_config, to_toml
from conftest import ROOT, run_module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "run"
    proc = run_module("jax_mlp.train", "--config", "configs/quick.toml", "--train.out_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_quick_run_writes_a_complete_run(quick_run):
    out, proc = quick_run
    summary = json.loads((out / "summary.json").read_text())
    for key in ("train_loss", "dev_loss", "test_loss", "steps", "num_params", "wall_seconds",
                "compile_seconds", "train_seconds", "steps_per_second"):
        assert key in summary, key
    for split in ("train", "dev", "test"):
        assert math.isfinite(summary[f"{split}_loss"]) and summary[f"{split}_loss"] < math.log(27)
    assert summary["steps"] == 3000 and summary["num_params"] == 11897
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1000, 2000, 3000]
    assert all({"loss", "learning_rate", "steps_per_second"} <= set(m) for m in metrics)
    assert load_config(out / "config.toml") == load_config(ROOT / "configs" / "quick.toml",
                                                           {"train.out_dir": str(out)})
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.npz", "step_000003000.npz"]
    # the end of the run prints the losses and 20 sampled names
    assert "train " in proc.stdout and "dev " in proc.stdout and "test " in proc.stdout
    names_line = next(line for line in proc.stdout.splitlines() if line.startswith("20 sampled names:"))
    assert len(names_line.split(":", 1)[1].split()) == 20


def test_sample_prints_names_from_the_vocabulary_and_repeats_with_the_seed(quick_run):
    out, _ = quick_run
    a = run_module("jax_mlp.sample", "--run", str(out), "-n", "25", "--seed", "3")
    b = run_module("jax_mlp.sample", "--run", str(out), "-n", "25", "--seed", "3")
    c = run_module("jax_mlp.sample", "--run", str(out), "-n", "25", "--seed", "4")
    assert a.returncode == 0, a.stderr
    names = a.stdout.splitlines()
    assert len(names) == 25
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz") for n in names)
    assert a.stdout == b.stdout
    assert a.stdout != c.stdout


def test_sample_temperature_changes_the_names(quick_run):
    out, _ = quick_run
    cold = run_module("jax_mlp.sample", "--run", str(out), "-n", "50", "--temperature", "0.3")
    hot = run_module("jax_mlp.sample", "--run", str(out), "-n", "50", "--temperature", "3")
    assert cold.returncode == hot.returncode == 0
    assert len(set(cold.stdout.split())) < len(set(hot.stdout.split()))


def test_existing_run_is_not_overwritten(quick_run):
    out, _ = quick_run
    before = (out / "summary.json").read_bytes()
    proc = run_module("jax_mlp.train", "--config", "configs/quick.toml", "--train.out_dir", str(out))
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (out / "summary.json").read_bytes() == before


def test_errors_from_a_real_process_are_one_line_exit_2(tmp_path):
    proc = run_module("jax_mlp.train", "--data.path", str(tmp_path / "missing.txt"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "does not exist" in proc.stderr
    assert proc.stdout == ""


def test_lecture_config_is_the_default():
    assert load_config(ROOT / "configs" / "lecture.toml") == Config()


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(ROOT / "configs" / "adam.toml", {"optimizer.b1": "0.8", "schedule.alpha": "0.2"})
    f = tmp_path / "c.toml"
    f.write_text(to_toml(cfg))
    assert load_config(f) == cfg
    assert cfg.optimizer.kwargs == {"weight_decay": 1e-4, "b1": 0.8}


def test_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    from jax_mlp.config import all_keys

    for key in all_keys():
        assert f"--{key}" in text, key
    assert "(default: 200000)" in text and "(default: 'sgd')" in text


def test_list_optimizers(capsys):
    train_cli.main(["--list-optimizers"])
    out = capsys.readouterr().out
    assert "adamw" in out and "lion" in out and "warmup_cosine_decay_schedule" in out


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(p)


BAD_FLAGS = {
    "block_size 0": (["--data.block_size", "0"], "data.block_size must be >= 1"),
    "n_embd 0": (["--model.n_embd", "0"], "model.n_embd must be >= 1"),
    "n_hidden -3": (["--model.n_hidden", "-3"], "model.n_hidden must be >= 1"),
    "batch_size 0": (["--train.batch_size", "0"], "train.batch_size must be >= 1"),
    "steps -1": (["--train.steps", "-1"], "train.steps must be >= 0"),
    "steps not int": (["--train.steps", "1e3x"], "train.steps must be an integer"),
    "lr not a number": (["--optimizer.learning_rate", "fast"], "optimizer.learning_rate must be a number"),
    "bool": (["--train.full_batch", "maybe"], "train.full_batch must be true or false"),
    "init": (["--model.init", "xavier"], "model.init must be one of lecture, part3, kaiming"),
    "unknown optimizer": (["--optimizer.name", "adamm"], "unknown optimizer 'adamm'; did you mean 'adam'"),
    "unknown schedule": (["--schedule.name", "cosine"], "unknown schedule 'cosine'"),
    "unknown optimizer kwarg": (["--optimizer.momentumm", "0.9"], "unknown keyword 'momentumm' for optax.sgd; did you mean 'momentum'"),
    "unknown schedule kwarg": (["--schedule.decay_steps", "5"], "schedule 'none' takes no keywords, got decay_steps"),
    "unknown lecture schedule kwarg": (["--schedule.name", "piecewise_constant_schedule", "--schedule.decay_steps", "5"],
                                       "unknown keyword 'decay_steps' for optax.piecewise_constant_schedule"),
    "missing schedule kwarg": (["--schedule.name", "cosine_decay_schedule"], "needs decay_steps"),
    "bad kwarg value": (["--optimizer.momentum", "abc"], "optimizer optax.sgd cannot be used"),
    "unknown key": (["--train.step", "5"], "unknown config key 'train.step'; did you mean 'train.steps'"),
    "unknown section": (["--trian.steps", "5"], "unknown config section [trian]; did you mean 'train'"),
    "stray argument": (["train"], "unrecognized argument 'train'"),
    "flag without value": (["--optimizer.momentum"], "needs a value"),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_bad_flags_are_one_line_exit_2(case, tmp_path, capsys, names_path):
    flags, message = BAD_FLAGS[case]
    argv = ["--config", str(ROOT / "configs" / "quick.toml"), "--data.path", str(names_path),
            "--train.out_dir", str(tmp_path / "out"), "--train.steps", "10", *flags]
    with pytest.raises(SystemExit) as e:
        train_cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "summary.json").exists()


BAD_FILES = {
    "empty data": ("data.txt", "", "is empty"),
    "blank data": ("data.txt", "\n \n\n", "only blank lines"),
    "non-utf8 data": ("data.txt", b"ab\n\xc3\x28\n", "is not UTF-8"),
    "dot in data": ("data.txt", "emma\nj.r.\n", "contains '.'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_data_files_are_one_line_exit_2(case, tmp_path, capsys):
    name, content, message = BAD_FILES[case]
    path = write(tmp_path, name, content)
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--data.path", path, "--train.out_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


BAD_CONFIGS = {
    "malformed": ("[train\nsteps = 3", "is not valid TOML"),
    "wrong type": ("[train]\nsteps = \"ten\"", "train.steps must be an integer, got 'ten'"),
    "bool for int": ("[model]\nn_embd = true", "model.n_embd must be an integer"),
    "unknown key": ("[model]\nn_hiden = 3", "unknown config key 'model.n_hiden'; did you mean 'model.n_hidden'"),
    "section not a table": ("train = 3", "[train] must be a table"),
    "out of range": ("[train]\nlog_every = 0", "train.log_every must be >= 1"),
    "negative lr": ("[optimizer]\nlearning_rate = -0.1", "optimizer.learning_rate must be > 0"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_files_are_one_line_exit_2(case, tmp_path, capsys):
    text, message = BAD_CONFIGS[case]
    path = write(tmp_path, "c.toml", text)
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--config", path, "--train.out_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_missing_config_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--config", str(tmp_path / "nope.toml")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_out_dir_that_is_a_file(tmp_path, capsys, names_path):
    f = tmp_path / "taken"
    f.write_text("mine")
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--config", str(ROOT / "configs" / "quick.toml"), "--data.path", str(names_path),
                        "--train.out_dir", str(f)])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err
    assert f.read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (["--run", "{tmp}"], "has no checkpoint"),
    (["--run", "{tmp}/missing"], "no checkpoint at"),
    (["--run", "{tmp}/junk.npz"], "not a readable jax_mlp checkpoint"),
    (["--run", "{tmp}", "-n", "0"], "-n must be >= 1"),
    (["--run", "{tmp}", "--temperature", "0"], "--temperature must be > 0"),
    (["--run", "{tmp}", "--seed", "x"], "invalid int value"),
])
def test_sample_bad_input(args, message, tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not a zip file at all")
    with pytest.raises(SystemExit) as e:
        sample_cli.main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def quick_train_with_cache(out, xdg_cache_home, jax_cache_dir=None, steps=100):
    """A short quick.toml run in a fresh process, with the cache location given."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env |= {"XDG_CACHE_HOME": str(xdg_cache_home), "JAX_PLATFORMS": "cpu"}
    if jax_cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = jax_cache_dir
    proc = subprocess.run([sys.executable, "-m", "jax_mlp.train", "--config", "configs/quick.toml",
                           "--train.steps", str(steps), "--train.out_dir", str(out), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_compiled_programs_are_cached_between_runs_and_change_nothing(tmp_path):
    cache = tmp_path / "xdg"
    quick_train_with_cache(tmp_path / "a", cache)
    entries = sorted(p.name for p in (cache / "jax_mlp" / "xla").iterdir())
    assert len(entries) >= 3  # at least the init, the training loop and the evaluation
    quick_train_with_cache(tmp_path / "b", cache)
    # The second run compiled nothing new, and its results are the first run's, bit for bit.
    assert sorted(p.name for p in (cache / "jax_mlp" / "xla").iterdir()) == entries
    first, second = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("a", "b"))
    for k in ("train_loss", "dev_loss", "test_loss"):
        assert second[k] == first[k]


def test_an_empty_jax_compilation_cache_dir_turns_the_cache_off(tmp_path):
    quick_train_with_cache(tmp_path / "run", tmp_path / "xdg", jax_cache_dir="", steps=10)
    assert not (tmp_path / "xdg").exists()


def test_an_unwritable_cache_location_only_means_no_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = quick_train_with_cache(tmp_path / "run", blocker / "cache", steps=10)
    assert "Warning" not in proc.stderr and (tmp_path / "run" / "summary.json").exists()
