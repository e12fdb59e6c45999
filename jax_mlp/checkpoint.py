"""Checkpoints as .npz files (no pickle): params, optimizer state, step, key, vocabulary, config.

A run directory keeps them in `checkpoints/`: `step_NNNNNNNNN.npz` for the newest few
and `best.npz` for the lowest dev loss. Each is written atomically: a temporary file
in the same directory, flushed and fsynced, then renamed over, so a crash at any
moment leaves the previous checkpoints whole.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jax_mlp import config as config_lib
from jax_mlp.data import Vocab
from jax_mlp.errors import UserError
from jax_mlp.model import Arch, param_shapes

CHECKPOINTS = "checkpoints"
BEST = "best.npz"
_STEP_FILE = re.compile(r"^step_(\d+)\.npz$")


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
    extra: dict
    path: Path
    model_state: dict


def save(path: str | Path, params, opt_state, step: int, key: jax.Array, vocab: Vocab,
         cfg: config_lib.Config, max_len: int, extra: dict | None = None, model_state: dict | None = None) -> None:
    """Write one checkpoint file atomically."""
    path = Path(path)
    meta = {"format": 1, "step": int(step), "vocab": list(vocab.itos), "max_len": int(max_len),
            "config": config_lib.to_dict(cfg), "extra": extra or {}}
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state)):
        arrays[f"opt/{i}"] = np.asarray(leaf)
    arrays["key"] = np.asarray(jax.random.key_data(key))
    for k, v in (model_state or {}).items():
        arrays[f"mstate/{k}"] = np.asarray(v)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def step_files(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The run's step checkpoints, oldest first (temporary files of interrupted writes are not listed)."""
    d = Path(run_dir) / CHECKPOINTS
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def save_rolling(run_dir: str | Path, keep: int, *args, **kwargs) -> Path:
    """Save `checkpoints/step_N.npz` (args as `save`, from params on) and delete all but the newest `keep`."""
    step = int(args[2])
    path = Path(run_dir) / CHECKPOINTS / f"step_{step:09d}.npz"
    save(path, *args, **kwargs)
    for _, old in step_files(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for stray in (Path(run_dir) / CHECKPOINTS).glob(".*.tmp"):  # left by a write that was killed
        stray.unlink(missing_ok=True)
    return path


def load(path: str | Path, warn=lambda s: print(s, file=sys.stderr)) -> Checkpoint:
    """Read a checkpoint file, or the newest readable one of a run directory; errors are UserErrors."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {str(path)!r}; give a run directory written by jax_mlp.train")
    if not path.is_dir():
        return _load_file(path)
    candidates = step_files(path)
    if not candidates:
        raise UserError(f"run directory {str(path)!r} has no checkpoint ({CHECKPOINTS}/step_*.npz); "
                        "give a directory written by jax_mlp.train")
    for i, (_, file) in enumerate(reversed(candidates)):
        try:
            ckpt = _load_file(file)
        except UserError as e:
            if i == len(candidates) - 1:
                raise
            warn(f"warning: skipping unreadable checkpoint: {e}")
            continue
        return ckpt
    raise AssertionError("unreachable")


def _load_file(path: Path) -> Checkpoint:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
        meta = json.loads(files.pop("meta").tobytes().decode("utf-8"))
        params = {k.split("/", 1)[1]: v for k, v in files.items() if k.startswith("params/")}
        model_state = {k.split("/", 1)[1]: v for k, v in files.items() if k.startswith("mstate/")}
        n_opt = sum(k.startswith("opt/") for k in files)
        opt_leaves = [files[f"opt/{i}"] for i in range(n_opt)]
        key_data = files["key"]
        step, vocab, max_len = int(meta["step"]), Vocab(tuple(meta["vocab"])), int(meta["max_len"])
        cfg_dict, extra = meta["config"], meta.get("extra", {})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, TypeError) as e:
        raise UserError(f"{str(path)!r} is not a readable jax_mlp checkpoint ({type(e).__name__}); "
                        "it may be truncated or from another program") from None
    try:
        cfg = config_lib.from_dict(cfg_dict)
    except UserError as e:
        raise UserError(f"{str(path)!r} holds a config this version cannot read: {e}") from None
    expected = param_shapes(len(vocab), cfg.data.block_size, cfg.model.n_embd, cfg.model.n_hidden, Arch.of(cfg.model))
    got = {k: tuple(v.shape) for k, v in params.items()}
    if got != expected:
        bad = next((k for k in expected if got.get(k) != expected[k]), next(iter(got), "?"))
        raise UserError(f"{str(path)!r}: parameter {bad} has shape {got.get(bad)}, but its config "
                        f"(n_embd {cfg.model.n_embd}, n_hidden {cfg.model.n_hidden}, block_size "
                        f"{cfg.data.block_size}, vocab {len(vocab)}) needs {expected.get(bad)}")
    return Checkpoint(params, opt_leaves, step, key_data, vocab, cfg, max_len, extra, path, model_state)
