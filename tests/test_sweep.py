"""Sweeps: many members in one vmapped program, each equal to its run alone."""

import csv
import json

import numpy as np
import pytest

from jax_mlp import checkpoint
from jax_mlp import sweep as sweep_cli
from jax_mlp.sweep import expand, parse_sweeps, program_key, run_sweep
from jax_mlp.train import train_and_evaluate
from conftest import ROOT, run_module

QUICK = ROOT / "configs" / "quick.toml"


def small(names_path, steps=300):
    return {"data.path": str(names_path), "train.steps": str(steps), "train.log_every": str(steps),
            "model.init": "kaiming", "model.n_hidden": "64", "train.num_samples": "0"}


def test_each_member_equals_the_same_config_trained_alone(names_path, tmp_path):
    members = expand(QUICK, small(names_path), parse_sweeps(["optimizer.learning_rate=0.05,0.2", "train.seed=0,3"]))
    assert len({program_key(cfg) for _, cfg in members}) == 1  # one program for all four
    results = run_sweep(members, tmp_path, log=lambda _: None)
    for (values, cfg), r in zip(members, results):
        alone = train_and_evaluate(cfg, log=lambda _: None)
        for split in ("train", "dev", "test"):
            assert r[f"{split}_loss"] == pytest.approx(alone.summary[f"{split}_loss"], abs=1e-4), values
        member = checkpoint.load(r["run_dir"])
        assert member.config == cfg
        for k, v in alone.state.params.items():
            np.testing.assert_allclose(member.params[k], np.asarray(v), rtol=1e-3, atol=1e-4)
    # different seeds and learning rates really are different runs
    assert len({round(r["dev_loss"], 6) for r in results}) == 4


def test_a_group_split_across_cores_gives_each_member_its_own_result(names_path, monkeypatch):
    members = expand(QUICK, small(names_path, 200), parse_sweeps(["optimizer.learning_rate=0.05,0.1,0.2"]))

    def results_with(shards):
        monkeypatch.setattr(sweep_cli, "cpu_shards", lambda n: min(n, shards))
        return run_sweep(members, None, log=lambda _: None)

    together, split = results_with(1), results_with(2)  # one program of 3; programs of 2 and 1 side by side
    assert len({r["dev_loss"] for r in together}) == 3  # the members really differ
    for a, b in zip(together, split):
        assert a["values"] == b["values"]
        for k in ("train_loss", "dev_loss", "test_loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-5)


def test_shape_changing_fields_run_as_separate_groups(names_path):
    members = expand(QUICK, small(names_path, 50), parse_sweeps(["model.n_hidden=16,32", "train.seed=0,1"]))
    assert len({program_key(cfg) for _, cfg in members}) == 2
    results = run_sweep(members, None, log=lambda _: None)
    assert sorted(r["group_size"] for r in results) == [2, 2, 2, 2]
    assert {r["num_params"] for r in results} == {27 * 10 + 30 * 16 + 16 + 16 * 27 + 27,
                                                  27 * 10 + 30 * 32 + 32 + 32 * 27 + 27}


def test_sweep_cli_writes_tables_and_sampleable_members(names_path, tmp_path):
    out = tmp_path / "sw"
    proc = run_module("jax_mlp.sweep", "--config", str(QUICK), "--data.path", str(names_path),
                      "--train.steps", "200", "--train.log_every", "100", "--train.out_dir", str(out),
                      "--sweep", "optimizer.learning_rate=0.03,0.1", "--sweep", "optimizer.name=sgd,adam")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "sweep.json").read_text())
    assert len(report["members"]) == 4
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    devs = [float(r["dev_loss"]) for r in rows]
    assert devs == sorted(devs) and len(rows) == 4
    sample = run_module("jax_mlp.sample", "--run", rows[0]["run_dir"], "-n", "5")
    assert sample.returncode == 0 and len(sample.stdout.split()) == 5
    header = next(line for line in proc.stdout.splitlines() if line.strip().startswith("optimizer.learning_rate"))
    assert header.split()[-3:] == ["train", "dev", "test"]


@pytest.mark.parametrize("argv, message", [
    ([], "give at least one --sweep"),
    (["--sweep", "optimizer.learning_rate="], "no values given"),
    (["--sweep", "optimizer.learning_rate"], "expected KEY=V1,V2"),
    (["--sweep", "train.stepz=1,2"], "unknown config key 'train.stepz'; did you mean 'train.steps'"),
    (["--sweep", "modle.n_hidden=1,2"], "unknown config section [modle]"),
    (["--sweep", "train.seed=0,x"], "train.seed must be an integer, got 'x'"),
    (["--sweep", "optimizer.learning_rate=0.1,fast"], "optimizer.learning_rate must be a number"),
    (["--sweep", "train.seed=0", "--sweep", "train.seed=1"], "given twice"),
    (["--sweep", "optimizer.name=sgd,adamm"], "unknown optimizer 'adamm'"),
    (["--sweep", "optimizer.momentumm=0.1,0.2"], "unknown keyword 'momentumm'"),
])
def test_bad_sweeps_are_one_line_exit_2(argv, message, capsys, tmp_path, names_path):
    with pytest.raises(SystemExit) as e:
        sweep_cli.main(["--config", str(QUICK), "--data.path", str(names_path), "--train.steps", "5",
                        "--train.out_dir", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
