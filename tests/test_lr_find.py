"""The learning-rate finder: the lecture's ramp, its CSV and plot, and a sensible suggestion."""

import csv
import math
import struct

import numpy as np
import pytest

from jax_mlp import lr_find
from jax_mlp.errors import UserError
from conftest import run_module


def test_ramp_is_the_lectures_exponential():
    ramp = lr_find.lr_ramp(1e-3, 1.0, 1000)
    expected = 10 ** np.linspace(-3, 0, 1000)
    got = np.array([float(ramp(i)) for i in range(1000)])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_suggestion_rule_on_a_known_curve():
    lrs = 10 ** np.linspace(-3, 0, 500)
    losses = (np.log10(lrs) + 1) ** 2 + 2  # lowest at lr = 0.1
    s = lr_find.suggest(lrs, losses)
    # the EMA lags the curve, so its minimum sits a little past 0.1
    assert 0.1 <= s["lr_at_min"] < 0.2
    assert s["suggested_lr"] == pytest.approx(s["lr_at_min"] / 3)


def test_suggest_rejects_an_all_nan_run():
    with pytest.raises(UserError, match="non-finite"):
        lr_find.suggest(np.array([0.1, 0.2]), np.array([np.nan, np.inf]))


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_lr_find_on_names_suggests_about_the_lectures_rate(names_path, tmp_path):
    proc = run_module("jax_mlp.lr_find", "--data.path", str(names_path), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "lr_find.csv").open()))
    assert len(rows) == 1000 and float(rows[0]["lr"]) == pytest.approx(1e-3)
    assert float(rows[-1]["lr"]) == pytest.approx(1.0)
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("suggested learning rate:"))
    suggested = float(line.split(":")[1].split()[0])
    assert 0.1 / 3 <= suggested <= 0.1 * 3
    if (tmp_path / "lr_find.png").exists():
        assert png_size(tmp_path / "lr_find.png") == (700, 400)
    else:
        pytest.importorskip("matplotlib")  # installed but no plot would be a bug
        raise AssertionError("matplotlib is installed but no plot was written")


@pytest.mark.parametrize("args, message", [
    (["--lr-min", "1", "--lr-max", "0.1"], "need 0 < --lr-min < --lr-max"),
    (["--lr-min", "0"], "need 0 < --lr-min < --lr-max"),
    (["--steps", "1"], "--steps must be >= 2"),
    (["--optimizer.name", "sgdd"], "unknown optimizer 'sgdd'"),
])
def test_lr_find_bad_input(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        lr_find.main(["--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
