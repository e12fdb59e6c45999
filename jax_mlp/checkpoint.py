"""Checkpoints as one .npz file (no pickle): params, optimizer state, step, key, vocabulary, config.

Written atomically: a temporary file in the same directory, flushed and fsynced,
then renamed over the old one, so a crash leaves either the old file or the new.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jax_mlp import config as config_lib
from jax_mlp.data import Vocab
from jax_mlp.errors import UserError

CHECKPOINT = "checkpoint.npz"


@dataclass
class Checkpoint:
    """What a checkpoint holds, as host arrays."""

    params: dict[str, np.ndarray]
    opt_leaves: list[np.ndarray]
    step: int
    key_data: np.ndarray
    vocab: Vocab
    config: config_lib.Config
    max_len: int


def save(path: str | Path, params, opt_state, step: int, key: jax.Array, vocab: Vocab,
         cfg: config_lib.Config, max_len: int) -> None:
    """Write a checkpoint to `path` atomically."""
    path = Path(path)
    meta = {"format": 1, "step": int(step), "vocab": list(vocab.itos), "max_len": int(max_len),
            "config": config_lib.to_dict(cfg)}
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state)):
        arrays[f"opt/{i}"] = np.asarray(leaf)
    arrays["key"] = np.asarray(jax.random.key_data(key))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint; a missing, truncated or foreign file is a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise UserError(f"no checkpoint at {str(path)!r}; give a run directory written by jax_mlp.train")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
        meta = json.loads(files.pop("meta").tobytes().decode("utf-8"))
        params = {k.split("/", 1)[1]: v for k, v in files.items() if k.startswith("params/")}
        n_opt = sum(k.startswith("opt/") for k in files)
        opt_leaves = [files[f"opt/{i}"] for i in range(n_opt)]
        key_data = files["key"]
        step, vocab, max_len = int(meta["step"]), Vocab(tuple(meta["vocab"])), int(meta["max_len"])
        cfg_dict = meta["config"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, TypeError) as e:
        raise UserError(f"{str(path)!r} is not a readable jax_mlp checkpoint ({type(e).__name__}); "
                        "it may be truncated or from another program") from None
    cfg = config_lib.from_dict(cfg_dict)
    return Checkpoint(params, opt_leaves, step, key_data, vocab, cfg, max_len)
