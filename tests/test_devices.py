"""Devices and scale, all on CPU: simulated devices, and two processes joined by jax.distributed."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from jax_mlp import train as train_cli
from conftest import ROOT

COMMON = ["--config", "configs/quick.toml", "--train.steps", "200", "--train.log_every", "100",
          "--train.num_samples", "0", "--model.init", "kaiming", "--train.batch_size", "64"]


def python(code: str, devices: int, *args, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


EIGHT_DEVICES = """
    import json, sys
    import jax, numpy as np
    from jax_mlp.config import load_config
    from jax_mlp.devices import Placement, select_devices
    from jax_mlp.errors import UserError
    from jax_mlp.optim import build_optimizer
    from jax_mlp.train import init_state, make_run_steps, train_and_evaluate
    from jax_mlp.data import make_dataset, read_words

    base = {"data.path": sys.argv[1], "train.steps": "300", "train.log_every": "100", "train.num_samples": "0",
            "model.init": "kaiming", "train.batch_size": "64"}
    out = {"devices": len(jax.devices())}
    runs = {n: train_and_evaluate(load_config("configs/quick.toml", {**base, "train.num_devices": str(n)}),
                                  log=lambda _: None).summary for n in (8, 1)}
    out["losses"] = {n: [r[f"{s}_loss"] for s in ("train", "dev", "test")] for n, r in runs.items()}

    # the layout itself: state replicated on all 8 devices, batches split, gradients all-reduced
    cfg = load_config("configs/quick.toml", base)
    ds = make_dataset(read_words(sys.argv[1]), 3)
    tx, _ = build_optimizer(cfg.optimizer, cfg.schedule)
    place = Placement.make(select_devices("", 0), 64, False)
    state = place.replicate(init_state(cfg, len(ds.vocab), tx))
    X, Y = place.replicate(ds.X["train"]), place.replicate(ds.Y["train"])
    run = make_run_steps(tx, 64, False, batch_sharding=place.batch_sharding)
    compiled = run.lower(state, X, Y, 0).compile()
    state, _ = compiled(state, X, Y, 10)
    leaves = jax.tree.leaves(state.params) + jax.tree.leaves(state.opt_state)
    out["replicated"] = all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 8 for x in leaves)
    out["batch_spec"] = str(place.batch_sharding.spec)
    out["all_reduce"] = "all-reduce" in compiled.as_text()
    try:
        Placement.make(select_devices("", 0), 30, False)
    except UserError as e:
        out["indivisible"] = str(e)
    print(json.dumps(out))
"""


def test_eight_devices_match_one_and_are_laid_out_as_intended(names_path):
    proc = python(EIGHT_DEVICES, 8, str(names_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices"] == 8
    for a, b in zip(r["losses"]["8"], r["losses"]["1"]):
        assert a == pytest.approx(b, abs=1e-5)
    assert r["replicated"] and r["all_reduce"]
    assert r["batch_spec"] in ("P(None, 'data')", "PartitionSpec(None, 'data')")
    assert "batch_size 30 does not divide over 8 devices" in r["indivisible"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_match_one_process_with_four_devices(names_path, tmp_path):
    env = lambda n: dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    args = [sys.executable, "-m", "jax_mlp.train", *COMMON, "--data.path", str(names_path)]
    port = free_port()
    procs = [subprocess.Popen([*args, "--train.out_dir", str(tmp_path / "dist"), "--train.distributed", "true",
                               "--train.coordinator_address", f"127.0.0.1:{port}", "--train.num_processes", "2",
                               "--train.process_id", str(i)], cwd=ROOT, env=env(2), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    assert "4 devices, data parallel, 2 processes" in outs[0][0]
    # only process 0 prints (gloo's own C++ chatter about peer ranks aside)
    ours = [l for l in outs[1][0].splitlines() if l.startswith(("data:", "model:", "step", "train ", "run written"))]
    assert ours == [] and "run written" in outs[0][0]
    ref = subprocess.run([*args, "--train.out_dir", str(tmp_path / "ref")], cwd=ROOT, env=env(4),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-1500:]
    dist = json.loads((tmp_path / "dist" / "summary.json").read_text())
    single = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert dist["processes"] == 2 and single["processes"] == 1 and len(dist["devices"]) == 4
    for split in ("train", "dev", "test"):
        assert dist[f"{split}_loss"] == pytest.approx(single[f"{split}_loss"], abs=1e-5)


def test_unknown_or_absent_platform_is_a_clear_error(capsys, tmp_path):
    for device, message in [("tpu", "train.device 'tpu' is not available here; this machine has: cpu"),
                            ("quantum", "train.device must be cpu, gpu, tpu or empty")]:
        with pytest.raises(SystemExit) as e:
            train_cli.main(["--train.device", device, "--train.out_dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err, err


def test_more_devices_than_there_are(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--train.num_devices", "64", "--train.out_dir", str(tmp_path)])
    assert e.value.code == 2 and "has 1 device(s)" in capsys.readouterr().err


def test_bfloat16_matmuls_stay_close_to_float32(names_path):
    from jax_mlp.config import load_config
    from jax_mlp.train import train_and_evaluate

    base = {"data.path": str(names_path), "train.steps": "1000", "train.log_every": "1000", "train.num_samples": "0",
            "model.init": "kaiming"}
    f32 = train_and_evaluate(load_config(ROOT / "configs" / "quick.toml", base), log=lambda _: None).summary
    bf16 = train_and_evaluate(load_config(ROOT / "configs" / "quick.toml", {**base, "model.compute_dtype": "bfloat16"}),
                              log=lambda _: None).summary
    assert bf16["compute_dtype"] == "bfloat16"
    assert abs(bf16["dev_loss"] - f32["dev_loss"]) < 0.02, (bf16["dev_loss"], f32["dev_loss"])
    assert bf16["dev_loss"] != f32["dev_loss"]  # it really computed in another precision
