"""The lecture's learning-rate finder: one short run with the rate rising exponentially.

    python -m jax_mlp.lr_find [--config FILE] [--lr-min 1e-3] [--lr-max 1] [--steps 1000]

Step i uses lr = lr_min * (lr_max / lr_min) ** (i / (steps - 1)), i.e. the lecture's
10 ** linspace(-3, 0, 1000). Writes lr_find.csv (step, lr, loss) and, with
matplotlib installed, lr_find.png (loss against log10 lr), and prints a suggestion.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jax_mlp import config as config_lib
from jax_mlp.config import Config, ScheduleConfig
from jax_mlp.data import make_dataset, read_words
from jax_mlp.errors import UserError, cli_entry
from jax_mlp.model import Arch
from jax_mlp.optim import check_optimizer, make_tx, validate
from jax_mlp.train import config_parser, init_state, make_steps, parse_config_args
from jax_mlp.devices import use_compile_cache

SMOOTHING = 0.98  # EMA factor over steps, bias-corrected
RULE = ("the rate where the smoothed loss (EMA 0.98) is lowest, divided by 3: "
        "the last rates before the minimum already train less reliably")


def lr_ramp(lr_min: float, lr_max: float, steps: int):
    """The exponential ramp as an optax schedule: step -> learning rate."""
    ratio = math.log(lr_max / lr_min) / max(steps - 1, 1)
    return lambda count: lr_min * jnp.exp(ratio * jnp.minimum(count, steps - 1))


def find(cfg: Config, lr_min: float = 1e-3, lr_max: float = 1.0, steps: int = 1000) -> dict:
    """Run the ramp with the config's model, data and optimizer; return lrs, losses and a suggestion."""
    validate(cfg.optimizer, ScheduleConfig("none", {}))
    ds = make_dataset(read_words(cfg.data.path), cfg.data.block_size, cfg.data.split_seed, cfg.data.first_n)
    ramp = lr_ramp(lr_min, lr_max, steps)
    tx = make_tx(cfg.optimizer, ScheduleConfig("none", {}), cfg.transforms, learning_rate=ramp)
    state = init_state(cfg, len(ds.vocab), tx)
    check_optimizer(tx, state.params, f"optax.{cfg.optimizer.name}")
    # One step per call of the real training loop, so each loss is that step's minibatch.
    run = jax.jit(make_steps(lambda _: tx, cfg.train.batch_size, cfg.train.full_batch, Arch.of(cfg.model)),
                  donate_argnums=0)
    X, Y = jax.device_put(ds.X["train"]), jax.device_put(ds.Y["train"])
    losses = []
    for _ in range(steps):
        state, loss = run(state, None, X, Y, 1)
        losses.append(loss)
    losses = np.asarray(jax.device_get(losses), np.float64)
    lrs = np.asarray([float(ramp(i)) for i in range(steps)])
    return {"lr": lrs, "loss": losses, "smoothed": smooth(losses), **suggest(lrs, losses)}


def smooth(losses: np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average; non-finite losses stay non-finite."""
    out, avg = np.empty_like(losses), 0.0
    for i, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def suggest(lrs: np.ndarray, losses: np.ndarray) -> dict:
    """The suggested rate by RULE, with the rate and loss at the smoothed minimum."""
    s = smooth(losses)
    finite = np.isfinite(s)
    if not finite.any():
        raise UserError("every loss of the lr finder was non-finite; lower --lr-min")
    i = int(np.nanargmin(np.where(finite, s, np.nan)))
    return {"suggested_lr": float(lrs[i] / 3), "lr_at_min": float(lrs[i]), "min_smoothed_loss": float(s[i]),
            "rule": RULE}


def write_csv(path: Path, result: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr", "loss"])
        for i, (lr, loss) in enumerate(zip(result["lr"], result["loss"])):
            w.writerow([i, f"{lr:.6g}", f"{loss:.6f}"])


def write_png(path: Path, result: dict) -> bool:
    """The lecture's plot, loss against log10(lr), with the smoothed curve; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    x = np.log10(result["lr"])
    ax.plot(x, result["loss"], lw=0.6, alpha=0.5, label="minibatch loss")
    ax.plot(x, result["smoothed"], lw=1.8, label="smoothed (EMA 0.98)")
    ax.axvline(math.log10(result["suggested_lr"]), color="k", ls="--", lw=1,
               label=f"suggested lr {result['suggested_lr']:.3g}")
    finite = result["loss"][np.isfinite(result["loss"])]
    ax.set_ylim(max(0.0, finite.min() - 0.2), min(finite.max(), np.nanpercentile(finite, 95) * 1.5))
    ax.set_xlabel("log10(learning rate)")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


@cli_entry
def main(argv=None):
    use_compile_cache()
    parser = config_parser("python -m jax_mlp.lr_find", "Find a learning rate the lecture's way.")
    parser.add_argument("--lr-min", type=float, default=1e-3, help="first rate (default %(default)s)")
    parser.add_argument("--lr-max", type=float, default=1.0, help="last rate (default %(default)s)")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the ramp (default %(default)s)")
    parser.add_argument("--out", default=None, help="directory for lr_find.csv/png (default: train.out_dir)")
    args, path, overrides = parse_config_args(parser, argv)
    if not (0 < args.lr_min < args.lr_max) or not math.isfinite(args.lr_max):
        raise UserError(f"need 0 < --lr-min < --lr-max, got {args.lr_min} and {args.lr_max}")
    if args.steps < 2:
        raise UserError(f"--steps must be >= 2, got {args.steps}")
    cfg = config_lib.load_config(path, overrides)
    out = Path(args.out or cfg.train.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {str(out)!r}: {e.strerror}") from None
    if (out / "lr_find.csv").exists() and not args.overwrite:
        raise UserError(f"{str(out / 'lr_find.csv')!r} exists; pass --overwrite or --out DIR")
    result = find(cfg, args.lr_min, args.lr_max, args.steps)
    write_csv(out / "lr_find.csv", result)
    wrote_png = write_png(out / "lr_find.png", result)
    print(f"{args.steps} steps of optax.{cfg.optimizer.name}, lr {args.lr_min:g} -> {args.lr_max:g}: "
          f"lowest smoothed loss {result['min_smoothed_loss']:.3f} at lr {result['lr_at_min']:.3g}")
    print(f"suggested learning rate: {result['suggested_lr']:.3g} ({result['rule']})")
    print(f"wrote {out / 'lr_find.csv'}" + (f" and {out / 'lr_find.png'}" if wrote_png
                                          else " (pip install 'jax_mlp[plot]' for the plot)"))


if __name__ == "__main__":
    main()
