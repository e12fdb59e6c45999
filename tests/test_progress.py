"""Progress between chunks, metrics files and TensorBoard events."""

import json
import struct

import pytest

from jax_mlp.config import load_config
from jax_mlp.progress import Progress
from jax_mlp.train import train_and_evaluate
from conftest import ROOT, run_module


def test_bar_shows_loss_rate_speed_and_eta(capsys):
    bar = Progress("bar", total=100)
    bar.advance(40, 2.5, 0.1, 1234.0)
    bar.log("step 40/100 | loss 2.5")
    bar.advance(60, 2.25, 0.01, 1500.0)
    bar.close()
    out = capsys.readouterr().out
    assert "100/100" in out and "loss=2.2500" in out and "lr=0.01" in out and "steps/s=1,500" in out
    assert "step 40/100 | loss 2.5" in out
    assert "<" in out  # tqdm's elapsed<remaining


def test_no_bar_when_not_asked(capsys):
    bar = Progress("none", total=10)
    bar.advance(10, 1.0, None, 10.0)
    bar.log("hidden")
    bar.close()
    assert capsys.readouterr().out == ""


def test_piped_output_is_plain_lines_and_quiet_is_quiet(tmp_path, names_path):
    args = ["--config", "configs/quick.toml", "--data.path", str(names_path), "--train.steps", "400",
            "--train.log_every", "200", "--train.num_samples", "0"]
    plain = run_module("jax_mlp.train", *args, "--train.out_dir", str(tmp_path / "a"))
    assert plain.returncode == 0
    steps = [l for l in plain.stdout.splitlines() if l.startswith("step ")]
    assert [l.split("|")[0].strip() for l in steps] == ["step   0/400", "step 200/400", "step 400/400"]
    assert "\r" not in plain.stdout and "%|" not in plain.stdout + plain.stderr
    quiet = run_module("jax_mlp.train", *args, "--train.out_dir", str(tmp_path / "b"), "--quiet")
    assert quiet.returncode == 0 and not [l for l in quiet.stdout.splitlines() if l.startswith("step ")]


def test_eval_every_puts_dev_loss_in_metrics_and_tensorboard(tmp_path, names_path):
    cfg = load_config(ROOT / "configs" / "quick.toml", {"data.path": str(names_path), "train.steps": "600",
                                                        "train.log_every": "200", "train.eval_every": "300",
                                                        "train.num_samples": "0"})
    train_and_evaluate(cfg, tmp_path, log=lambda _: None)
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [200, 300, 400, 600]
    assert [r["step"] for r in records if "dev_loss" in r] == [300, 600]
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2

    scalars = {}
    for f in (tmp_path / "tb").glob("events.out.tfevents.*"):
        data, pos = f.read_bytes(), 0
        while pos < len(data):  # TFRecord: length, crc, payload, crc
            n = struct.unpack("<Q", data[pos:pos + 8])[0]
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    assert [s for s, _ in scalars["loss/train"]] == [200, 300, 400, 600]
    assert [s for s, _ in scalars["loss/dev"]] == [300, 600]
    assert scalars["loss/dev"][-1][1] == pytest.approx(records[-1]["dev_loss"], rel=1e-6)
