"""Loss of a trained run on each split of its data, or on a new file, beside the bigram baseline.

    python -m jax_mlp.evaluate --run DIR [--data.path FILE] [--best]

The baseline is lecture part 1's count-based bigram model: counts of each
(character, next character) pair over all items of the data, plus one, normalised;
its mean loss over all of names.txt is 2.454.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jax_mlp import checkpoint
from jax_mlp.data import Vocab, build_examples, make_dataset, read_words
from jax_mlp.errors import ArgumentParser, UserError, cli_entry
from jax_mlp.model import Arch
from jax_mlp.train import evaluate
from jax_mlp.devices import use_compile_cache


def bigram_table(words: list[str], vocab: Vocab, smoothing: float = 1.0) -> np.ndarray:
    """Log-probabilities (V, V) of the next character given the previous one, counts + smoothing."""
    X, Y = build_examples(words, vocab, 1)
    counts = np.full((len(vocab), len(vocab)), smoothing, np.float64)
    np.add.at(counts, (X[:, 0], Y), 1)
    return np.log(counts / counts.sum(1, keepdims=True))


def bigram_loss(logp: np.ndarray, words: list[str], vocab: Vocab) -> float | None:
    """Mean negative log-likelihood of the words' characters (and closing '.') under the bigram table."""
    if not words:
        return None
    X, Y = build_examples(words, vocab, 1)
    return float(-logp[X[:, 0], Y].mean())


def _check_vocab(words: list[str], vocab: Vocab, source: str) -> None:
    unknown = sorted(set("".join(words)) - set(vocab.itos[1:]))
    if unknown:
        raise UserError(f"{source} has characters the model never saw: {''.join(unknown)[:40]!r} "
                        f"(its vocabulary: {''.join(vocab.itos[1:])})")


def evaluate_run(run: str, data_path: str | None = None, best: bool = False) -> dict:
    """Model and bigram losses per split (the run's own data) or on `data_path` as one set."""
    source = Path(run) / checkpoint.CHECKPOINTS / checkpoint.BEST if best else run
    ckpt = checkpoint.load(source)
    cfg = ckpt.config
    params = {k: jnp.asarray(v) for k, v in ckpt.params.items()}
    model_state = {k: jnp.asarray(v) for k, v in ckpt.model_state.items()}
    if data_path:
        words = read_words(data_path)
        _check_vocab(words, ckpt.vocab, f"data file {data_path!r}")
        splits = {"all": words}
    else:
        try:
            words = read_words(cfg.data.path)
        except UserError as e:
            raise UserError(f"{e} (the run's data.path; give --data.path to evaluate on another file)") from None
        ds = make_dataset(words, cfg.data.block_size, cfg.data.split_seed, cfg.data.first_n)
        if ds.vocab != ckpt.vocab:
            raise UserError(f"{cfg.data.path or 'the bundled data'} is not the data this run was trained on "
                            "(its vocabulary differs); give --data.path")
        splits = {"all": words, **ds.words}
    logp = bigram_table(words, ckpt.vocab)
    result = {"step": ckpt.step, "checkpoint": str(ckpt.path), "splits": {}}
    for name, ws in splits.items():
        X, Y = build_examples(ws, ckpt.vocab, cfg.data.block_size)
        result["splits"][name] = {"items": len(ws), "examples": int(len(Y)),
                                  "loss": evaluate(params, X, Y, arch=Arch.of(cfg.model), model_state=model_state),
                                  "bigram_loss": bigram_loss(logp, ws, ckpt.vocab)}
    return result


@cli_entry
def main(argv=None):
    use_compile_cache()
    parser = ArgumentParser(prog="python -m jax_mlp.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run directory (train.out_dir) or checkpoint file")
    parser.add_argument("--data.path", dest="data_path", default=None,
                        help="evaluate on all items of this file instead of the run's own splits")
    parser.add_argument("--best", action="store_true", help="use the checkpoint with the best dev loss")
    args = parser.parse_args(argv)
    r = evaluate_run(args.run, args.data_path, args.best)
    fmt = lambda v: "  n/a " if v is None else f"{v:.4f}"
    print(f"checkpoint {r['checkpoint']} (step {r['step']})")
    print(f"{'split':>6} {'items':>7} {'examples':>9}   model   bigram")
    for name, s in r["splits"].items():
        print(f"{name:>6} {s['items']:>7} {s['examples']:>9}  {fmt(s['loss'])}  {fmt(s['bigram_loss'])}")
    print("bigram: lecture part 1's count model (+1 smoothing) fitted on all items above")


if __name__ == "__main__":
    main()
