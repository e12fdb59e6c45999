"""Train the MLP: a jitted optax step, fused into on-device loops between log points.

    python -m jax_mlp.train [--config FILE] [--SECTION.FIELD VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import contextlib
import hashlib
import math
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_mlp import checkpoint
from jax_mlp import config as config_lib
from jax_mlp.config import Config
from jax_mlp.data import Dataset, loss_floor, make_dataset, read_words
from jax_mlp.errors import ArgumentParser, UserError, cli_entry
from jax_mlp.model import LECTURE, Arch, forward, init_model_state, init_params, loss_fn, num_params, \
    per_example_loss, train_loss
from jax_mlp.devices import Placement, init_distributed, is_main_process, select_devices, to_host, \
    use_compile_cache
from jax_mlp.progress import MetricsWriter, Progress
from jax_mlp.optim import SCHEDULES, build_optimizer, check_optimizer, learning_rate_fn, optimizer_names
from jax_mlp.sample import sample_names

RUN_FILES = ("summary.json", "metrics.jsonl", checkpoint.CHECKPOINTS, "config.toml")


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, so it flows through jit and loops."""

    params: dict
    opt_state: optax.OptState
    key: jax.Array  # minibatch key; see make_steps
    step: jax.Array
    model_state: dict = {}  # batchnorm's running statistics, when the model has batchnorm


def make_init(cfg: Config, vocab_size: int, make_tx: Callable) -> Callable:
    """A pure `(key, hparams) -> TrainState`; make_tx(hparams) gives the optax transformation."""
    m = cfg.model

    def init(key, hparams=None):
        model_key, data_key = jax.random.split(key)
        arch = Arch.of(m)
        params = init_params(model_key, vocab_size, cfg.data.block_size, m.n_embd, m.n_hidden, m.init, arch)
        return TrainState(params, make_tx(hparams).init(params), data_key, jnp.zeros((), jnp.int32),
                          init_model_state(m.n_hidden, arch))

    return init


def init_state(cfg: Config, vocab_size: int, tx: optax.GradientTransformation) -> TrainState:
    """Fresh parameters and optimizer state from the config's seed."""
    # One compiled program rather than an eager dispatch (and compile) per op.
    return jax.jit(make_init(cfg, vocab_size, lambda _: tx))(jax.random.key(cfg.train.seed))


DROPOUT_STREAM = 2**31 - 1  # fold_in tag of the dropout keys; batch blocks never reach it


def make_train_step(tx: optax.GradientTransformation, arch: Arch = LECTURE) -> Callable:
    """The update `(state, (X, Y)) -> (state, metrics)`: value_and_grad, then optax, no mutation."""

    def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
        if arch.plain:
            loss, grads = jax.value_and_grad(partial(loss_fn, compute_dtype=arch.compute_dtype))(state.params, *batch)
            model_state = state.model_state
        else:
            key = jax.random.fold_in(jax.random.fold_in(state.key, DROPOUT_STREAM), state.step)
            (loss, model_state), grads = jax.value_and_grad(train_loss, has_aux=True)(
                state.params, state.model_state, *batch, key, arch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1,
                              model_state=model_state), {"loss": loss}

    return train_step


BATCH_BLOCK = 256  # steps whose minibatches are drawn and gathered in one go


def make_steps(make_tx: Callable, batch_size: int, full_batch: bool, arch: Arch = LECTURE,
               batch_sharding=None) -> Callable:
    """A pure `(state, hparams, X, Y, num_steps) -> (state, loss_sum)` that runs num_steps updates.

    make_tx(hparams) gives the optax transformation, so hyperparameters can be traced
    values (a sweep vmaps this over members). Minibatch indices are drawn, and their rows
    gathered, for a block of BATCH_BLOCK steps at a time (one large RNG call and gather
    instead of many small ones: the bench measured ~25% more steps/s); step s uses row
    s % BATCH_BLOCK of block s // BATCH_BLOCK, drawn from fold_in(key, block). So the
    data a step sees depends only on the seed and the step number, not on where the
    chunks begin and end. With `batch_sharding` (data parallelism), each block of
    minibatches is laid out across the devices along the batch axis; XLA then computes
    each device's share and sums the gradients across devices.
    """

    def full_batch_steps(state, hparams, X, Y, num_steps):
        train_step = make_train_step(make_tx(hparams), arch)

        def one_step(_, carry):
            state, loss_sum = carry
            state, metrics = train_step(state, (X, Y))
            return state, loss_sum + metrics["loss"]

        return jax.lax.fori_loop(0, num_steps, one_step, (state, jnp.float32(0)))

    def minibatch_steps(state, hparams, X, Y, num_steps):
        train_step = make_train_step(make_tx(hparams), arch)
        end = state.step + num_steps

        def block(carry):
            state, loss_sum = carry
            b = state.step // BATCH_BLOCK
            ix = jax.random.randint(jax.random.fold_in(state.key, b), (BATCH_BLOCK, batch_size), 0, X.shape[0])
            Xb, Yb = X.at[ix].get(mode="promise_in_bounds"), Y.at[ix].get(mode="promise_in_bounds")
            if batch_sharding is not None:
                Xb = jax.lax.with_sharding_constraint(Xb, batch_sharding)
                Yb = jax.lax.with_sharding_constraint(Yb, batch_sharding)
            stop = jnp.minimum(end, (b + 1) * BATCH_BLOCK)

            def one_step(carry):
                state, loss_sum = carry
                row = state.step % BATCH_BLOCK
                state, metrics = train_step(state, (Xb[row], Yb[row]))
                return state, loss_sum + metrics["loss"]

            return jax.lax.while_loop(lambda c: c[0].step < stop, one_step, (state, loss_sum))

        return jax.lax.while_loop(lambda c: c[0].step < end, block, (state, jnp.float32(0)))

    return full_batch_steps if full_batch else minibatch_steps


def make_run_steps(tx: optax.GradientTransformation, batch_size: int, full_batch: bool,
                   arch: Arch = LECTURE, batch_sharding=None) -> Callable:
    """A jitted `(state, X, Y, num_steps) -> (state, loss_sum)` that runs num_steps updates on the device.

    num_steps is traced, so every chunk length shares one compiled program.
    """
    steps = make_steps(lambda _: tx, batch_size, full_batch, arch, batch_sharding)
    return jax.jit(lambda state, X, Y, num_steps: steps(state, None, X, Y, num_steps), donate_argnums=0)


@partial(jax.jit, static_argnames=("chunk", "arch"))
def _loss_sum(params, model_state, X, Y, n_valid, chunk, arch):
    per_example = per_example_loss(params, X, Y, arch, model_state)
    return jnp.where(jnp.arange(chunk) < n_valid, per_example, 0.0).sum()


def evaluate(params, X: np.ndarray, Y: np.ndarray, chunk: int = 16384, arch: Arch = LECTURE,
             model_state: dict | None = None) -> float | None:
    """Mean loss over a whole split, in fixed-size chunks (one compile, bounded memory); None if empty."""
    n = len(Y)
    if n == 0:
        return None
    total = 0.0
    for start in range(0, n, chunk):
        xb, yb = X[start:start + chunk], Y[start:start + chunk]
        valid = len(yb)
        if valid < chunk:
            xb = np.concatenate([xb, np.zeros((chunk - valid, X.shape[1]), X.dtype)])
            yb = np.concatenate([yb, np.zeros(chunk - valid, Y.dtype)])
        total += float(_loss_sum(params, model_state or {}, xb, yb, valid, chunk, arch))
    return total / n


def _boundaries(steps: int, log_every: int, eval_every: int) -> list[int]:
    points = set(range(log_every, steps, log_every)) | {steps}
    if eval_every:
        points |= set(range(eval_every, steps, eval_every))
    return sorted(p for p in points if p > 0)


def prepare_out_dir(out_dir: Path, overwrite: bool, run_files: tuple[str, ...] = RUN_FILES) -> None:
    """Create the run directory; refuse one that holds another run unless overwrite is asked."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"train.out_dir {str(out_dir)!r} is a file, not a directory")
    existing = [f for f in run_files if (out_dir / f).exists()]
    if existing and not overwrite:
        raise UserError(f"train.out_dir {str(out_dir)!r} already holds a run ({existing[0]}); "
                        "choose another --train.out_dir or pass --overwrite")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to train.out_dir {str(out_dir)!r}: {e.strerror}") from None
    for f in existing:  # only with --overwrite
        shutil.rmtree(out_dir / f) if (out_dir / f).is_dir() else (out_dir / f).unlink()


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


class Run(NamedTuple):
    """What train_and_evaluate returns: the final state, the data it used and the summary."""

    state: TrainState
    dataset: Dataset
    summary: dict


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written at `step`."""

    def __init__(self, signum: int, step: int, out_dir: Path | None):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.out_dir = signum, step, out_dir


class Diverged(Exception):
    """The loss became non-finite; nothing after the last good checkpoint was saved."""


# Fields a resumed run may change: none of them changes what the run computes.
RESUMABLE = {"train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.num_samples", "train.out_dir", "data.path", "train.device",
             "train.num_devices", "train.distributed", "train.coordinator_address", "train.num_processes",
             "train.process_id"}

MAX_CHUNK = 5000  # steps between host syncs at most, so signals are answered within ~0.3 s


def data_fingerprint(words: list[str]) -> str:
    """A hash of the items, to check that a resumed run reads the same data."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()[:16]


def check_resume_config(saved: Config, cfg: Config) -> None:
    """A resumed run may change only RESUMABLE fields; any other change is a UserError naming it."""
    a, b = config_lib.to_dict(saved), config_lib.to_dict(cfg)
    for section in a:
        for key in sorted(set(a[section]) | set(b[section])):
            dotted = f"{section}.{key}"
            if dotted not in RESUMABLE and a[section].get(key) != b[section].get(key):
                raise UserError(f"--resume cannot change {dotted} (checkpoint has {a[section].get(key)!r}, "
                                f"asked {b[section].get(key)!r}); only {', '.join(sorted(RESUMABLE))} may change")


@jax.jit
def _all_finite(params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)]))


@contextlib.contextmanager
def _catch_signals(enabled: bool):
    """Record SIGINT/SIGTERM instead of dying mid-chunk; the loop checks between chunks."""
    caught: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _restore(ckpt: checkpoint.Checkpoint, template: TrainState) -> TrainState:
    """Put a checkpoint's arrays into the structure of a freshly initialised state."""
    opt_def = jax.tree_util.tree_structure(template.opt_state)
    if opt_def.num_leaves != len(ckpt.opt_leaves):
        raise UserError(f"{str(ckpt.path)!r}: its optimizer state does not match optax.{ckpt.config.optimizer.name} "
                        "as configured; it was written by another optimizer setup")
    return TrainState({k: jnp.asarray(v) for k, v in ckpt.params.items()},
                      jax.tree_util.tree_unflatten(opt_def, [jnp.asarray(x) for x in ckpt.opt_leaves]),
                      jax.random.wrap_key_data(jnp.asarray(ckpt.key_data)), jnp.asarray(ckpt.step, jnp.int32),
                      {k: jnp.asarray(v) for k, v in ckpt.model_state.items()})


def train_and_evaluate(cfg: Config, out_dir: str | Path | None = None, *,
                       tx: optax.GradientTransformation | None = None, overwrite: bool = False,
                       resume: bool = False, handle_signals: bool = False, progress: str = "none",
                       log: Callable[[str], None] = print) -> Run:
    """Train per `cfg`, evaluate every split, write the run to out_dir (None = write nothing).

    `tx` replaces the optimizer and schedule of the config with any optax transformation.
    `resume` continues from the newest checkpoint in out_dir. With `handle_signals`,
    SIGINT/SIGTERM end the current chunk, write a checkpoint and raise Interrupted.
    `progress` is "bar" (a tqdm bar between chunks) or "none"; log lines go to `log`.
    """
    devices = select_devices(cfg.train.device, cfg.train.num_devices)
    place = Placement.make(devices, cfg.train.batch_size, cfg.train.full_batch)
    if not is_main_process():  # only process 0 prints and writes files
        out_dir, progress, log = None, "none", (lambda _: None)
    with jax.default_device(place.local_device):
        return _train_and_evaluate(cfg, out_dir, tx=tx, overwrite=overwrite, resume=resume,
                                   handle_signals=handle_signals, progress=progress, log=log, place=place)


def _train_and_evaluate(cfg, out_dir, *, tx, overwrite, resume, handle_signals, progress, log, place) -> Run:
    t_start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    ckpt = None
    if resume:
        if out is None:
            raise UserError("--resume needs train.out_dir, the run directory to continue")
        ckpt = checkpoint.load(out, warn=log)
        check_resume_config(ckpt.config, cfg)
    words = read_words(cfg.data.path)
    fingerprint = data_fingerprint(words)
    if ckpt is not None and ckpt.extra.get("data_fingerprint") not in (None, fingerprint):
        raise UserError(f"--resume: {cfg.data.path or 'the bundled data'} is not the data this run was trained on "
                        "(its items differ); give the run's data.path")
    ds = make_dataset(words, cfg.data.block_size, cfg.data.split_seed, cfg.data.first_n)
    if tx is None:
        tx, lr_at = build_optimizer(cfg.optimizer, cfg.schedule, cfg.transforms)
        opt_name = f"optax.{cfg.optimizer.name}"
    else:
        lr_at, opt_name = learning_rate_fn(None), "custom optax transformation"
    if out is not None and not resume:
        prepare_out_dir(out, overwrite)
    if out is not None:
        (out / "config.toml").write_text(config_lib.to_toml(cfg), encoding="utf-8")

    shapes = jax.eval_shape(make_init(cfg, len(ds.vocab), lambda _: tx), jax.random.key(0))
    check_optimizer(tx, shapes.params, opt_name)
    arch = Arch.of(cfg.model)
    X_train, Y_train = place.replicate(ds.X["train"]), place.replicate(ds.Y["train"])
    run_steps = make_run_steps(tx, cfg.train.batch_size, cfg.train.full_batch, arch, place.batch_sharding)

    def compile_steps():
        t0 = time.perf_counter()
        return run_steps.lower(place.abstract(shapes), X_train, Y_train, 0).compile(), time.perf_counter() - t0

    # XLA compiles without holding the GIL: the training loop compiles on one core while
    # the initial state and the first evaluation compile and run on the other.
    compile_pool = ThreadPoolExecutor(1)
    compiling = compile_pool.submit(compile_steps)
    compile_pool.shutdown(wait=False)
    state = init_state(cfg, len(ds.vocab), tx)
    if ckpt is not None:
        state = _restore(ckpt, state)
    state = place.replicate(state)
    start_step = int(to_host(state.step))
    n_params = num_params(state.params)
    devices = place.devices
    sizes = ds.sizes()
    longest = max(len(w) for ws in ds.words.values() for w in ws)
    max_len = max(32, 2 * longest)
    log(f"data: {cfg.data.path or 'bundled SSA 2017 names'}: {sum(len(w) for w in ds.words.values())} items, "
        f"vocab {len(ds.vocab)}, examples train/dev/test {sizes['train']}/{sizes['dev']}/{sizes['test']}")
    log(f"model: {n_params} params; {opt_name}; {cfg.train.steps} steps of "
        f"{'full batch' if cfg.train.full_batch else f'batch {cfg.train.batch_size}'} "
        f"on {devices[0].platform} ({len(devices)} device{'s' if len(devices) > 1 else ''}"
        f"{', data parallel' if place.mesh is not None else ''}"
        f"{f', {jax.process_count()} processes' if jax.process_count() > 1 else ''})"
        + (f"; resuming at step {start_step}" if ckpt is not None else ""))

    def localized(state: TrainState) -> TrainState:
        """The state with one copy of its params and model state on this process's device."""
        local = lambda tree: jax.device_put(jax.tree.map(to_host, tree), place.local_device)
        return state._replace(params=local(state.params), model_state=local(state.model_state))

    def loss_on(here: TrainState, split: str) -> float | None:
        """Mean loss of a split under a localized state."""
        return evaluate(here.params, ds.X[split], ds.Y[split], arch=arch, model_state=here.model_state)

    here = localized(state)
    initial_loss, initial_dev_loss = loss_on(here, "train"), loss_on(here, "dev")
    compiled, compile_seconds = compiling.result()
    width = len(str(cfg.train.steps))
    log(f"step {start_step:>{width}}/{cfg.train.steps} | loss {initial_loss:.4f} (whole train split)")
    # The names printed at the end come from a program that can compile now, on the core
    # the training loop leaves idle; the call at the end then finds it compiled (and, were
    # this warm-up to fail, raises the error itself).
    warm_sampler = ThreadPoolExecutor(1)
    if cfg.train.num_samples and is_main_process():
        warm_sampler.submit(sample_names, here.params, ds.vocab, cfg.data.block_size,
                            cfg.train.num_samples, jax.random.key(0), max_len, arch=arch,
                            model_state=here.model_state)

    def save_checkpoint(state: TrainState, best: float | None, dev: float | None = None) -> float | None:
        """Write a step checkpoint, and the best one when `state`'s dev loss (given, or
        computed here) beats `best`; the best dev loss so far."""
        extra = {"data_fingerprint": fingerprint, "train_words": ds.words["train"]}
        state = jax.tree.map(to_host, state)
        checkpoint.save_rolling(out, cfg.train.keep_checkpoints, state.params, state.opt_state, int(state.step),
                                state.key, ds.vocab, cfg, max_len, extra=extra, model_state=state.model_state)
        if dev is None:
            dev = loss_on(localized(state), "dev")
        if dev is not None and (best is None or dev < best):
            checkpoint.save(out / checkpoint.CHECKPOINTS / checkpoint.BEST, state.params, state.opt_state,
                            int(state.step), state.key, ds.vocab, cfg, max_len, extra=extra | {"dev_loss": dev},
                            model_state=state.model_state)
            return dev
        return best

    best = None
    if out is not None and (out / checkpoint.CHECKPOINTS / checkpoint.BEST).exists():
        try:
            best = checkpoint.load(out / checkpoint.CHECKPOINTS / checkpoint.BEST).extra.get("dev_loss")
        except UserError:
            best = None
    metrics = MetricsWriter(out, keep_until=start_step if resume else None)
    bar = Progress(progress, cfg.train.steps, start_step, log)
    ckpt_every = cfg.train.checkpoint_every
    points = _boundaries(cfg.train.steps, min(cfg.train.log_every, MAX_CHUNK), cfg.train.eval_every)
    if ckpt_every:
        points = sorted(set(points) | set(range(ckpt_every, cfg.train.steps, ckpt_every)))
    train_seconds, prev, since_log, loss_acc = 0.0, start_step, 0, 0.0
    last_saved = start_step if ckpt is not None else None
    try:
        with _catch_signals(handle_signals) as caught:
            for point in (p for p in points if p > start_step):
                t0 = time.perf_counter()
                new_state, loss_sum = compiled(state, X_train, Y_train, point - prev)
                loss_sum = float(loss_sum)  # the host syncs here, and only here
                dt = time.perf_counter() - t0
                if not math.isfinite(loss_sum) or not bool(_all_finite(new_state.params)):
                    why = f"loss {loss_sum}" if not math.isfinite(loss_sum) else "parameters overflowed"
                    kept_ckpt = (f"the last good checkpoint (step {last_saved}) is kept in {out}"
                                 if last_saved is not None else "no checkpoint was written")
                    raise Diverged(f"training diverged in steps {prev + 1}-{point} ({why}); {kept_ckpt}; try a lower "
                                   f"optimizer.learning_rate (now {cfg.optimizer.learning_rate:g})")
                state = new_state
                train_seconds += dt
                lr_now = lr_at(point - 1)  # one host evaluation of the schedule per chunk
                bar.advance(point - prev, loss_sum / (point - prev), lr_now, (point - prev) / dt)
                loss_acc += loss_sum
                since_log += point - prev
                prev = point
                if out is not None and ckpt_every and point % ckpt_every == 0 and point < cfg.train.steps:
                    best = save_checkpoint(state, best)
                    last_saved = point
                logged = point % cfg.train.log_every == 0 or point == cfg.train.steps
                evaluated = cfg.train.eval_every and point % cfg.train.eval_every == 0
                if logged or evaluated:
                    record = {"step": point, "loss": loss_acc / since_log, "learning_rate": lr_now,
                              "steps_per_second": (point - start_step) / train_seconds,
                              "elapsed_seconds": time.perf_counter() - t_start}
                    if evaluated:
                        record["dev_loss"] = loss_on(localized(state), "dev")
                    lr = "" if record["learning_rate"] is None else f" | lr {record['learning_rate']:.4g}"
                    dev = "" if record.get("dev_loss") is None else f" | dev {record['dev_loss']:.4f}"
                    bar.log(
                        f"step {point:>{width}}/{cfg.train.steps} | loss {record['loss']:.4f}"
                        f"{dev}{lr} | {record['steps_per_second']:,.0f} steps/s")
                    metrics.write(record)
                    since_log, loss_acc = 0, 0.0
                if caught and point < cfg.train.steps:
                    if out is not None:
                        best = save_checkpoint(state, best)
                    raise Interrupted(caught[0], point, out)
    finally:
        bar.close()
        metrics.close()
        warm_sampler.shutdown(wait=True)

    final = localized(state)
    losses = {f"{s}_loss": loss_on(final, s) for s in ("train", "dev", "test")}
    summary = {
        **losses,
        "initial_train_loss": initial_loss,
        "initial_dev_loss": initial_dev_loss,
        "steps": cfg.train.steps,
        "resumed_from_step": start_step if ckpt is not None else None,
        "num_params": n_params,
        "examples": sizes,
        "vocab_size": len(ds.vocab),
        "platform": devices[0].platform,
        "devices": [str(d) for d in devices],
        "processes": jax.process_count(),
        "compute_dtype": cfg.model.compute_dtype,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": (cfg.train.steps - start_step) / train_seconds if train_seconds > 0 else None,
        "final_learning_rate": lr_at(max(cfg.train.steps - 1, 0)),
    }
    if cfg.data.first_n:
        summary["loss_floor"] = loss_floor(ds.X["train"], ds.Y["train"])
    if out is not None and int(to_host(state.step)) != last_saved:
        save_checkpoint(state, best, losses["dev_loss"])
    summary["wall_seconds"] = time.perf_counter() - t_start
    if out is not None:
        _write_json(out / "summary.json", summary)
    return Run(final, ds, summary | {"max_len": max_len})


def overfit_report(params, ds: Dataset, arch: Arch = LECTURE, model_state: dict | None = None) -> str:
    """The lecture's check on a tiny set: the loss floor, and argmax prediction vs label per example."""
    X, Y = ds.X["train"], ds.Y["train"]
    floor = loss_floor(X, Y)
    pred = np.asarray(jnp.argmax(forward(params, jnp.asarray(X), arch, model_state), axis=-1))
    itos = ds.vocab.itos
    lines = [f"loss floor {floor:.4f}: the lowest mean loss any model can reach here, because some "
             "contexts are followed by several different characters "
             f"(e.g. {itos[0] * X.shape[1]!r} by {', '.join(sorted({itos[y] for x, y in zip(X, Y) if not x.any()}))})",
             f"{'context':>{max(7, X.shape[1])}}  label  argmax"]
    for x, y, p in zip(X, Y, pred):
        lines.append(f"{''.join(itos[i] for i in x):>{max(7, X.shape[1])}}  {itos[y]:^5}  {itos[p]:^6}"
                     f"{'' if p == y else '  x'}")
    correct = int((pred == Y).sum())
    lines.append(f"{correct}/{len(Y)} examples predicted right by argmax")
    return "\n".join(lines)


def _add_config_flags(parser: ArgumentParser) -> None:
    defaults = config_lib.Config()
    for section in config_lib.SECTION_NAMES:
        about = None
        if section in config_lib.KWARG_SECTIONS:
            kw = getattr(defaults, section).kwargs
            about = (f"Also any keyword argument of the optax {section} as --{section}.KEYWORD VALUE, "
                     f"VALUE a TOML literal (default: {kw or 'none'}). Setting name drops the keywords set before.")
        group = parser.add_argument_group(f"[{section}]", about)
        for name, f in config_lib.section_fields(section).items():
            default = getattr(getattr(defaults, section), name)
            group.add_argument(f"--{section}.{name}", metavar="V", default=argparse.SUPPRESS,
                               help=f"{f.metadata['help']} (default: {default!r})")


def config_parser(prog: str, description: str) -> ArgumentParser:
    """A parser with --config and a --SECTION.FIELD flag for every config field."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: the lecture's run)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in train.out_dir")
    parser.add_argument("--quiet", action="store_true", help="print only the final results")
    return parser


def parse_config_args(parser: ArgumentParser, argv: list[str] | None):
    """Parse argv -> (options, config file, {"section.key": text} overrides); kwargs flags pass through."""
    _add_config_flags(parser)
    args, rest = parser.parse_known_args(argv)
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    i = 0
    while i < len(rest):
        flag = rest[i]
        if not flag.startswith("--") or "." not in flag:
            raise UserError(f"unrecognized argument {flag!r}; flags look like --SECTION.FIELD VALUE "
                            f"(see {parser.prog} --help)")
        if "=" in flag:
            key, value = flag[2:].split("=", 1)
        elif i + 1 < len(rest):
            key, value = flag[2:], rest[i + 1]
            i += 1
        else:
            raise UserError(f"flag {flag} needs a value")
        section = key.split(".", 1)[0]
        if section not in config_lib.KWARG_SECTIONS:
            config_lib.resolve([({section: {key.split(".", 1)[1]: value}}, True)])  # raises a named error
        overrides[key] = value
        i += 1
    return args, args.config, overrides


def parse_args(argv: list[str] | None):
    """CLI flags -> (config file, {"section.key": text} overrides, options)."""
    parser = config_parser("python -m jax_mlp.train",
                           "Train the makemore MLP with JAX and optax. Every config field can be set with "
                           "--SECTION.FIELD VALUE; the defaults are configs/lecture.toml.")
    parser.add_argument("--list-optimizers", action="store_true", help="list accepted optimizers and schedules")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.out_dir from its newest checkpoint")
    args, path, overrides = parse_config_args(parser, argv)
    return path, overrides, args


@cli_entry
def main(argv=None):
    use_compile_cache()
    config_path, overrides, args = parse_args(argv)
    if args.list_optimizers:
        print("optimizers ([optimizer] name):", ", ".join(optimizer_names()))
        print("schedules ([schedule] name): none,", ", ".join(SCHEDULES))
        print("transforms ([transforms]):", ", ".join(config_lib.section_fields("transforms")))
        return
    init_distributed(config_lib.load_config(config_path, overrides).train)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; give one")
    if args.resume:
        # The run's own config, with only the overrides given here on top.
        out_dir = Path(overrides.get("train.out_dir") or config_lib.load_config(config_path).train.out_dir)
        cfg = config_lib.load_config(config_path, overrides, base=checkpoint.load(out_dir).config)
    else:
        cfg = config_lib.load_config(config_path, overrides)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    # A bar on a terminal; plain log lines when stdout is a file or pipe; nothing with --quiet.
    progress = "bar" if sys.stdout.isatty() and not args.quiet else "none"
    out = cfg.train.out_dir
    try:
        run = train_and_evaluate(cfg, out, overwrite=args.overwrite, resume=args.resume, handle_signals=True,
                                 progress=progress, log=log)
    except Interrupted as e:
        print(f"{e}; checkpoint written. Resume with: python -m jax_mlp.train --train.out_dir {out} --resume",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + e.signum) from None
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    if not is_main_process():
        return
    s = run.summary
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    print(f"train {fmt(s['train_loss'])} | dev {fmt(s['dev_loss'])} | test {fmt(s['test_loss'])} "
          f"| {s['steps']} steps in {s['train_seconds']:.1f}s ({s['steps_per_second'] or 0:,.0f} steps/s) "
          f"+ compile {s['compile_seconds']:.1f}s")
    if cfg.data.first_n:
        print(overfit_report(run.state.params, run.dataset, Arch.of(cfg.model), run.state.model_state))
    if cfg.train.num_samples:
        names = sample_names(run.state.params, run.dataset.vocab, cfg.data.block_size, cfg.train.num_samples,
                             jax.random.key(cfg.train.seed), s["max_len"], arch=Arch.of(cfg.model),
                             model_state=run.state.model_state)
        print(f"{len(names)} sampled names: " + " ".join(names))
    print(f"run written to {out} (sample more: python -m jax_mlp.sample --run {out})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
