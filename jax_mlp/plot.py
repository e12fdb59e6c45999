"""The lecture's pictures of a run, as PNG files.

    python -m jax_mlp.plot --run DIR [--out DIR]

loss.png: log10 of the training loss (as the lecture plots it), smoothed, with the
dev loss; embedding.png: the embedding table C as a 2-D scatter with each character
drawn at its point (PCA to 2-D when n_embd > 2); lr_find.png from the run's
lr_find.csv when it has one. Needs matplotlib (`pip install "jax_mlp[plot]"`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from jax_mlp import checkpoint
from jax_mlp.errors import ArgumentParser, UserError, cli_entry
from jax_mlp.lr_find import smooth, suggest, write_png

LOSS_SIZE = (8, 4.5)  # inches at 100 dpi: 800 x 450 pixels
EMBEDDING_SIZE = (8, 8)  # 800 x 800


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install 'jax_mlp[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl records; a UserError if there are none."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise UserError(f"{str(run_dir)!r} has no metrics.jsonl; give a run directory written by jax_mlp.train")
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UserError(f"{str(path)!r} is not JSON lines ({e.msg} at line {e.lineno})") from None
    if not records:
        raise UserError(f"{str(path)!r} is empty: the run logged nothing yet")
    return records


def plot_loss(records: list[dict], path: Path) -> None:
    """log10 training loss per log point (each the mean over its steps), smoothed, and the dev loss."""
    plt = _pyplot()
    steps = np.array([r["step"] for r in records], float)
    loss = np.log10(np.array([r["loss"] for r in records], float))
    fig, ax = plt.subplots(figsize=LOSS_SIZE, dpi=100)
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="train (mean per log interval)")
    ax.plot(steps, smooth(loss, 0.8 if len(loss) > 10 else 0.0), lw=2, label="train, smoothed")
    dev = [(r["step"], r["dev_loss"]) for r in records if r.get("dev_loss") is not None]
    if dev:
        ax.plot([s for s, _ in dev], np.log10([d for _, d in dev]), "o-", ms=4, label="dev")
    ax.set_xlabel("step")
    ax.set_ylabel("log10(loss)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def embedding_2d(C: np.ndarray) -> tuple[np.ndarray, str]:
    """The embedding rows in 2-D: as they are when n_embd is 2, else their first two principal components."""
    if C.shape[1] == 1:
        return np.column_stack([C[:, 0], np.zeros(len(C))]), "C[:, 0]"
    if C.shape[1] == 2:
        return C, "C[:, 0] vs C[:, 1]"
    centered = C - C.mean(0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    share = (s[:2] ** 2).sum() / (s**2).sum()
    return centered @ vt[:2].T, f"PCA of {C.shape[1]}-d embeddings ({share:.0%} of the variance)"


def plot_embedding(C: np.ndarray, itos: tuple[str, ...], path: Path) -> None:
    """The lecture's figure: a dot per character with the character drawn in it."""
    plt = _pyplot()
    xy, title = embedding_2d(np.asarray(C, np.float64))
    fig, ax = plt.subplots(figsize=EMBEDDING_SIZE, dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=200)
    for (x, y), ch in zip(xy, itos):
        ax.text(x, y, ch, ha="center", va="center", color="white")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every picture the run supports; return their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{str(run_dir)!r} is not a run directory")
    records = read_metrics(run_dir)
    ckpt = checkpoint.load(run_dir)
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "loss.png", out / "embedding.png"]
    plot_loss(records, written[0])
    plot_embedding(ckpt.params["C"], ckpt.vocab.itos, written[1])
    lr_csv = run_dir / "lr_find.csv"
    if lr_csv.exists():
        rows = list(csv.DictReader(lr_csv.open()))
        lrs = np.array([float(r["lr"]) for r in rows])
        losses = np.array([float(r["loss"]) for r in rows])
        write_png(out / "lr_find.png", {"lr": lrs, "loss": losses, "smoothed": smooth(losses), **suggest(lrs, losses)})
        written.append(out / "lr_find.png")
    return written


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="python -m jax_mlp.plot", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run directory (train.out_dir)")
    parser.add_argument("--out", default=None, help="where to write the PNGs (default: the run directory)")
    args = parser.parse_args(argv)
    for path in plot_run(args.run, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
