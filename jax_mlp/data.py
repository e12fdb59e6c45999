"""Text -> vocabulary -> context windows -> the lecture's train/dev/test split."""

from __future__ import annotations

import importlib.resources
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jax_mlp.errors import UserError

BOUNDARY = "."  # index 0: the start and end of every item, as in the lecture
BUNDLED = "ssa_names_2017.txt"
MAX_ITEM_LENGTH = 10_000  # characters; a longer "item" is almost surely a file without line breaks


def parse_words(text: str, source: str = "data") -> list[str]:
    """The items of a text: its non-blank lines, surrounding whitespace stripped."""
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise UserError(f"{source} line {line} contains a NUL byte; expected plain text, one item per line")
    words = [w for w in (line.strip() for line in text.splitlines()) if w]
    if not words:
        what = "is empty" if not text else "has only blank lines"
        raise UserError(f"{source} {what}; expected one item (e.g. a name) per line")
    for i, w in enumerate(words):
        if len(w) > MAX_ITEM_LENGTH:
            raise UserError(f"{source}: item {i + 1} is {len(w):,} characters long (at most {MAX_ITEM_LENGTH:,}); "
                            "expected one short item, such as a name, per line")
        if BOUNDARY in w:
            raise UserError(f"{source}: item {i + 1} ({w[:40]!r}) contains '{BOUNDARY}', which is reserved "
                            "for the start/end token; remove it from the data")
    return words


def read_words(path: str | Path | None) -> list[str]:
    """Read the items of a UTF-8 file; None or '' reads the bundled SSA 2017 names."""
    if not path:
        text = importlib.resources.files("jax_mlp.datasets").joinpath(BUNDLED).read_text(encoding="utf-8")
        return parse_words(text, f"bundled {BUNDLED}")
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file {str(p)!r} does not exist; give a UTF-8 text file with one item per line")
    if p.is_dir():
        raise UserError(f"data file {str(p)!r} is a directory; give a UTF-8 text file with one item per line")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read data file {str(p)!r}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"data file {str(p)!r} is not UTF-8 (bad byte at offset {e.start}); "
                        "save it as UTF-8 text") from None
    return parse_words(text, f"data file {str(p)!r}")


@dataclass(frozen=True)
class Vocab:
    """Characters by index; index 0 is the boundary token '.'."""

    itos: tuple[str, ...]

    @classmethod
    def from_words(cls, words: list[str]) -> Vocab:
        """The sorted set of characters in `words`, after the boundary token."""
        return cls((BOUNDARY, *sorted(set("".join(words)))))

    @property
    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, word: str) -> list[int]:
        stoi = self.stoi
        return [stoi[c] for c in word]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: starts[i], starts[i]+1, ..., starts[i]+counts[i]-1 for each i."""
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets


def build_examples(words: list[str], vocab: Vocab, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts X (N, block_size) and targets Y (N,): each character of word + '.' after its context.

    The context starts as all boundary tokens, exactly as the lecture's build_dataset.
    """
    if not words:
        return np.zeros((0, block_size), np.int32), np.zeros((0,), np.int32)
    stoi = vocab.stoi
    # Lay every word out as [0]*block_size + ids + [0]; the context of a target is
    # the block_size tokens before it, so one sliding window view gives them all.
    lengths = np.fromiter((len(w) for w in words), np.int64, len(words))
    seg = block_size + lengths + 1
    starts = np.concatenate([[0], np.cumsum(seg)[:-1]])
    seq = np.zeros(int(seg.sum()), np.int32)
    seq[_ranges(starts + block_size, lengths)] = np.fromiter((stoi[c] for c in "".join(words)), np.int32)
    targets = _ranges(starts + block_size, lengths + 1)
    windows = np.lib.stride_tricks.sliding_window_view(seq, block_size)
    return np.ascontiguousarray(windows[targets - block_size]), seq[targets]


def split_words(words: list[str], split_seed: int) -> tuple[list[str], list[str], list[str]]:
    """The lecture's split: random.seed(split_seed); random.shuffle(words); 80% / 10% / 10%."""
    words = list(words)
    random.Random(split_seed).shuffle(words)  # same sequence as random.seed + random.shuffle
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


@dataclass(frozen=True)
class Dataset:
    """Everything training needs from the text: vocabulary, words and examples of each split."""

    vocab: Vocab
    words: dict[str, list[str]]
    X: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]

    def sizes(self) -> dict[str, int]:
        return {k: int(v.shape[0]) for k, v in self.Y.items()}


def make_dataset(words: list[str], block_size: int, split_seed: int = 42, first_n: int = 0) -> Dataset:
    """Split and encode `words`; with first_n > 0, the first N words, unshuffled, are all training data."""
    vocab = Vocab.from_words(words)
    if first_n:
        splits = {"train": words[:first_n], "dev": [], "test": []}
    else:
        splits = dict(zip(("train", "dev", "test"), split_words(words, split_seed)))
    X, Y = {}, {}
    for name, ws in splits.items():
        X[name], Y[name] = build_examples(ws, vocab, block_size)
    if len(Y["train"]) == 0:
        raise UserError(f"the data has too few items ({len(words)}) to make a training split; give at least 2")
    return Dataset(vocab, splits, X, Y)


def loss_floor(X: np.ndarray, Y: np.ndarray) -> float:
    """The lowest mean cross-entropy any model can reach on (X, Y).

    A model sees only the context, so where one context precedes several targets
    the best it can do is predict their empirical distribution: the floor is the
    mean, over examples, of the entropy of the targets that share its context.
    """
    counts: dict[tuple, dict[int, int]] = {}
    for x, y in zip(map(tuple, X.tolist()), Y.tolist()):
        counts.setdefault(x, {}).setdefault(y, 0)
        counts[x][y] += 1
    total = 0.0
    for targets in counts.values():
        n = sum(targets.values())
        total -= sum(c * np.log(c / n) for c in targets.values())
    return float(total / len(Y))
