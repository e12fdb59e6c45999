"""Plots, evaluation against the bigram baseline, and the sampling options, as a user runs them."""

import numpy as np
import pytest

from jax_mlp import evaluate as evaluate_cli
from jax_mlp import plot as plot_cli
from jax_mlp import sample as sample_cli
from jax_mlp.config import load_config
from jax_mlp.data import Vocab, read_words
from jax_mlp.evaluate import bigram_loss, bigram_table
from jax_mlp.train import train_and_evaluate
from conftest import ROOT


@pytest.fixture(scope="module")
def run_dir(names_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeing") / "run"
    cfg = load_config(ROOT / "configs" / "quick.toml", {"data.path": str(names_path), "train.steps": "2000",
                                                        "train.log_every": "100", "train.eval_every": "500",
                                                        "model.init": "kaiming", "train.num_samples": "0"})
    train_and_evaluate(cfg, out, log=lambda _: None)
    return out


def test_bigram_baseline_of_names_txt_is_the_lectures(names_path):
    words = read_words(names_path)
    vocab = Vocab.from_words(words)
    assert bigram_loss(bigram_table(words, vocab), words, vocab) == pytest.approx(2.4546, abs=5e-4)


def test_evaluate_prints_each_split_and_the_baseline(run_dir, capsys):
    evaluate_cli.main(["--run", str(run_dir)])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:6]}
    assert set(rows) == {"all", "train", "dev", "test"}
    assert rows["train"][2] == "182625" and rows["dev"][2] == "22655" and rows["test"][2] == "22866"
    assert float(rows["all"][4]) == pytest.approx(2.4546, abs=5e-4)
    assert 2.0 < float(rows["dev"][3]) < 2.6


def test_evaluate_on_a_new_file_and_its_errors(run_dir, tmp_path, capsys):
    f = tmp_path / "new.txt"
    f.write_text("anna\nbob\n")
    evaluate_cli.main(["--run", str(run_dir), "--data.path", str(f)])
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[:3] == ["all", "2", "9"]
    f.write_text("anna\nzoë\n")
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--run", str(run_dir), "--data.path", str(f)])
    assert e.value.code == 2 and "never saw: 'ë'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--run", str(tmp_path)])
    assert e.value.code == 2 and "has no checkpoint" in capsys.readouterr().err


def read_png(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_plots_are_real_pictures(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    (run_dir / "lr_find.csv").write_text("step,lr,loss\n" + "".join(
        f"{i},{10 ** (-3 + 3 * i / 99):.6g},{3 + np.sin(i / 10):.4f}\n" for i in range(100)))
    written = plot_cli.plot_run(run_dir, tmp_path)
    assert [p.name for p in written] == ["loss.png", "embedding.png", "lr_find.png"]
    sizes = {"loss.png": (450, 800), "embedding.png": (800, 800), "lr_find.png": (400, 700)}
    for p in written:
        img = read_png(p)
        assert img.shape[:2] == sizes[p.name], p.name
        assert img[..., :3].std() > 0.05, f"{p.name} is blank"


def test_plot_bad_run_dirs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot_cli.main(["--run", str(tmp_path)])
    assert e.value.code == 2 and "has no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    with pytest.raises(SystemExit) as e:
        plot_cli.main(["--run", str(tmp_path)])
    assert e.value.code == 2 and "has no checkpoint" in capsys.readouterr().err


def test_embedding_2d_uses_pca_beyond_two_dims():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(27, 2)) @ rng.normal(size=(2, 10))  # rank 2 in 10-d
    xy, title = plot_cli.embedding_2d(C)
    assert xy.shape == (27, 2) and "100% of the variance" in title
    xy2, _ = plot_cli.embedding_2d(C[:, :2])
    np.testing.assert_array_equal(xy2, C[:, :2])


def sample(run_dir, *args):
    return sample_cli.main(["--run", str(run_dir), *args])


def test_prefix_top_k_unique_and_novelty(run_dir, capsys):
    sample(run_dir, "-n", "30", "--prefix", "ja")
    out, err = capsys.readouterr()
    names = out.split()
    assert len(names) == 30 and all(n.startswith("ja") for n in names)
    assert "names are new (not among the 24,002 distinct training words)" in err
    sample(run_dir, "-n", "40", "--unique", "--seed", "1")
    names = capsys.readouterr().out.split()
    assert len(names) == len(set(names)) == 40
    sample(run_dir, "-n", "200", "--top-k", "1")
    greedy = capsys.readouterr().out.split()
    assert len(set(greedy)) == 1  # top-1 is argmax: every name the same


@pytest.mark.parametrize("args, message", [
    (["--prefix", "j4"], "--prefix 'j4' has characters the model never saw: '4'"),
    (["--top-k", "-1"], "--top-k must be >= 1"),
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--temperature", "-2"], "--temperature must be > 0"),
])
def test_sample_option_errors(run_dir, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        sample(run_dir, *args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
