"""Train many configs at once: members stacked on a leading axis, one vmapped, jitted program.

    python -m jax_mlp.sweep --config configs/lecture.toml \
        --sweep optimizer.learning_rate=0.01,0.03,0.1,0.3 --sweep train.seed=0,1,2,3

Every combination of the --sweep values is a member. Members that differ only in
values the step can take as arrays (the seed, the learning rate, some numeric
optimizer keywords) share one compiled program, vmapped over the member axis, each
with its own key and so its own batches. Members that differ in anything else (a
shape, the optimizer, the step count) cannot, and form groups that run in turn. On
CPU a group is split into one part per core, the parts running side by side.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jax_mlp import checkpoint
from jax_mlp import config as config_lib
from jax_mlp.config import Config
from jax_mlp.data import make_dataset, read_words
from jax_mlp.devices import use_compile_cache
from jax_mlp.errors import UserError, cli_entry
from jax_mlp.model import Arch, num_params
from jax_mlp.optim import check_optimizer, make_tx, validate
from jax_mlp.train import _boundaries, config_parser, evaluate, make_init, make_steps, parse_config_args, \
    prepare_out_dir, _write_json

# Optimizer keywords that optax only does arithmetic with, so they can be traced per member.
TRACEABLE_KWARGS = ("momentum", "b1", "b2", "eps", "weight_decay", "decay")


def parse_sweeps(specs: list[str]) -> dict[str, list[str]]:
    """`KEY=v1,v2,...` strings -> {key: [text values]}, with named errors."""
    if not specs:
        raise UserError("give at least one --sweep KEY=V1,V2,... (e.g. --sweep optimizer.learning_rate=0.03,0.1)")
    sweeps: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        key = key.strip().removeprefix("--")
        if not eq or not key:
            raise UserError(f"--sweep {spec!r}: expected KEY=V1,V2,... such as train.seed=0,1,2")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not items:
            raise UserError(f"--sweep {key}: no values given; expected {key}=V1,V2,...")
        if key in sweeps:
            raise UserError(f"--sweep {key} is given twice; put all its values in one --sweep")
        section, _, field = key.partition(".")
        if section not in config_lib.KWARG_SECTIONS:
            config_lib.resolve([({section: {field: items[0]}}, True)])  # unknown keys raise a named error
        sweeps[key] = items
    return sweeps


def expand(path, overrides: dict, sweeps: dict[str, list[str]]) -> list[tuple[dict, Config]]:
    """Every combination of the sweep values: (the values it sets, its resolved config)."""
    members = []
    for combo in itertools.product(*sweeps.values()):
        assigned = dict(zip(sweeps, combo))
        try:
            cfg = config_lib.load_config(path, {**overrides, **assigned})
        except UserError as e:
            raise UserError(f"sweep member {assigned}: {e}") from None
        members.append((assigned, cfg))
    return members


def _hparams_of(cfg: Config) -> dict:
    kwargs = {k: v for k, v in cfg.optimizer.kwargs.items()
              if k in TRACEABLE_KWARGS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"learning_rate": cfg.optimizer.learning_rate, "kwargs": kwargs}


def program_key(cfg: Config) -> str:
    """Members with the same key can share one compiled program (they differ only in traced values)."""
    hp = _hparams_of(cfg)
    opt = dataclasses.replace(cfg.optimizer, learning_rate=1.0,
                              kwargs={k: v for k, v in cfg.optimizer.kwargs.items() if k not in hp["kwargs"]})
    neutral = dataclasses.replace(cfg, optimizer=opt, train=dataclasses.replace(cfg.train, seed=0, out_dir="-"))
    return config_lib.to_toml(neutral) + "\n#" + ",".join(sorted(hp["kwargs"]))


def _member_tx(base: Config):
    """hparams -> the optax transformation of a member of base's group."""
    return lambda hp: make_tx(base.optimizer, base.schedule, base.transforms,
                              learning_rate=hp["learning_rate"], opt_kwargs=hp["kwargs"])


def init_group(cfgs: list[Config], ds):
    """The members' stacked initial states and hyperparameters."""
    base = cfgs[0]
    names = sorted(_hparams_of(base)["kwargs"])
    hparams = {"learning_rate": jnp.asarray([c.optimizer.learning_rate for c in cfgs], jnp.float32),
               "kwargs": {k: jnp.asarray([c.optimizer.kwargs[k] for c in cfgs], jnp.float32) for k in names}}
    keys = jnp.stack([jax.random.key(c.train.seed) for c in cfgs])
    return jax.jit(jax.vmap(make_init(base, len(ds.vocab), _member_tx(base))))(keys, hparams), hparams


def compile_group(base: Config, state, hparams, X, Y):
    """The vmapped step loop for states and hparams shaped like these (any members of base's group)."""
    steps = jax.jit(jax.vmap(make_steps(_member_tx(base), base.train.batch_size, base.train.full_batch,
                                        Arch.of(base.model)), in_axes=(0, 0, None, None, None)), donate_argnums=0)
    return steps.lower(state, hparams, X, Y, 0).compile()


def cpu_shards(members: int) -> int:
    """Parts to split a group into: on CPU one per core, since XLA runs each program on
    one core but runs programs called from different threads side by side (bench: 16
    members as 2 x 8 on 2 cores, ~2.1x the member-steps/s of one program of 16)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(members, len(os.sched_getaffinity(0))))


class GroupRunner:
    """The members of one group, split into cpu_shards parts that train side by side."""

    def __init__(self, cfgs: list[Config], ds):
        parts = np.array_split(np.arange(len(cfgs)), cpu_shards(len(cfgs)))
        self._X, self._Y = jax.device_put(ds.X["train"]), jax.device_put(ds.Y["train"])
        self._pool = ThreadPoolExecutor(len(parts))
        t0 = time.perf_counter()
        self._states, self._hparams = zip(*(init_group([cfgs[i] for i in idx], ds) for idx in parts))
        self._states = list(self._states)
        # One program per part size (parts differ in size by at most one), compiled side by side.
        first: dict[int, int] = {}
        for j, idx in enumerate(parts):
            first.setdefault(len(idx), j)
        programs = {n: self._pool.submit(compile_group, cfgs[0], self._states[j], self._hparams[j], self._X, self._Y)
                    for n, j in first.items()}
        self._programs = [programs[len(idx)].result() for idx in parts]
        self.compile_seconds = time.perf_counter() - t0

    def advance(self, num_steps: int) -> np.ndarray:
        """Train every member num_steps further; their summed losses, in member order."""
        def one(j):
            self._states[j], loss_sum = self._programs[j](self._states[j], self._hparams[j], self._X, self._Y,
                                                         num_steps)
            return np.asarray(loss_sum)

        return np.concatenate(list(self._pool.map(one, range(len(self._programs)))))

    def state(self):
        """The members' states, stacked along the leading axis in member order."""
        return jax.tree.map(lambda *parts: jnp.concatenate(parts), *self._states)

    def close(self) -> None:
        self._pool.shutdown()


def run_group(cfgs: list[Config], ds, log=print) -> tuple[object, list[float]]:
    """Train the members of one group together; return the stacked final state and timings."""
    base = cfgs[0]
    runner = GroupRunner(cfgs, ds)
    try:
        t0, prev = time.perf_counter(), 0
        for point in _boundaries(base.train.steps, base.train.log_every, 0):
            losses = runner.advance(point - prev) / (point - prev)
            log(f"  step {point}/{base.train.steps} | member losses {' '.join(f'{l:.3f}' for l in losses)}")
            prev = point
        state = runner.state()
        jax.block_until_ready(state)
    finally:
        runner.close()
    return state, [runner.compile_seconds, time.perf_counter() - t0]


def run_sweep(members: list[tuple[dict, Config]], out_dir: Path | None, log=print) -> list[dict]:
    """Train every member, grouped by program; write each member's run and the sweep tables."""
    first = members[0][1]
    words = read_words(first.data.path)
    datasets = {}
    groups: dict[str, list[int]] = {}
    for i, (_, cfg) in enumerate(members):
        validate(cfg.optimizer, cfg.schedule)
        groups.setdefault(program_key(cfg), []).append(i)
    results: list[dict] = [{} for _ in members]
    for g, idx in enumerate(groups.values()):
        cfgs = [members[i][1] for i in idx]
        base = cfgs[0]
        dkey = (base.data.block_size, base.data.split_seed, base.data.first_n, base.data.path)
        if dkey not in datasets:
            datasets[dkey] = make_dataset(words if base.data.path == first.data.path else read_words(base.data.path),
                                          base.data.block_size, base.data.split_seed, base.data.first_n)
        ds = datasets[dkey]
        tx = make_tx(base.optimizer, base.schedule, base.transforms)
        shapes = jax.eval_shape(lambda k: make_init(base, len(ds.vocab), lambda _: tx)(k).params, jax.random.key(0))
        check_optimizer(tx, shapes, f"optax.{base.optimizer.name}")
        log(f"group {g + 1}/{len(groups)}: {len(idx)} member{'s' * (len(idx) > 1)} in one program, "
            f"{base.train.steps} steps each")
        state, (compile_s, train_s) = run_group(cfgs, ds, log)
        longest = max(len(w) for ws in ds.words.values() for w in ws)
        for j, i in enumerate(idx):
            member = jax.tree.map(lambda a: a[j], state)
            losses = {f"{s}_loss": evaluate(member.params, ds.X[s], ds.Y[s], arch=Arch.of(base.model),
                                            model_state=member.model_state) for s in ("train", "dev", "test")}
            diverged = any(v is not None and not np.isfinite(v) for v in losses.values())
            losses = {k: None if v is None or not np.isfinite(v) else v for k, v in losses.items()}
            results[i] = {"member": i, "values": members[i][0], **losses, "diverged": diverged,
                          "steps": base.train.steps,
                          "num_params": num_params(member.params), "group": g, "group_size": len(idx),
                          "group_compile_seconds": compile_s, "group_train_seconds": train_s}
            if out_dir is not None:
                mdir = out_dir / "members" / f"{i:03d}"
                mdir.mkdir(parents=True, exist_ok=True)
                (mdir / "config.toml").write_text(config_lib.to_toml(members[i][1]), encoding="utf-8")
                checkpoint.save_rolling(mdir, 1, member.params, member.opt_state, int(member.step),
                                        member.key, ds.vocab, members[i][1], max(32, 2 * longest),
                                        model_state=member.model_state)
                _write_json(mdir / "summary.json", results[i])
                results[i]["run_dir"] = str(mdir)
    return results


def format_table(results: list[dict], keys: list[str]) -> str:
    """Members sorted by dev loss, one line each."""
    rows = sorted(results, key=lambda r: (r["dev_loss"] is None, r["dev_loss"] or 0.0))
    fmt = lambda v: "  n/a " if v is None else f"{v:.4f}"
    width = {k: max(len(k), *(len(str(r["values"][k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.rjust(width[k]) for k in keys) + "   train     dev    test"]
    for r in rows:
        lines.append("  ".join(str(r["values"][k]).rjust(width[k]) for k in keys)
                     + f"  {fmt(r['train_loss'])}  {fmt(r['dev_loss'])}  {fmt(r['test_loss'])}")
    return "\n".join(lines)


@cli_entry
def main(argv=None):
    use_compile_cache()
    parser = config_parser("python -m jax_mlp.sweep", "Train every combination of --sweep values at once.")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a config key and its values; repeat for a grid (e.g. --sweep train.seed=0,1,2)")
    args, path, overrides = parse_config_args(parser, argv)
    sweeps = parse_sweeps(args.sweep)
    members = expand(path, overrides, sweeps)
    # Members' own train.out_dir is not used: each member's run goes to OUT/members/NNN.
    out_dir = Path(overrides.get("train.out_dir", members[0][1].train.out_dir.rstrip("/") + "_sweep"))
    prepare_out_dir(out_dir, args.overwrite, run_files=("sweep.json", "sweep.csv", "members"))
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    log(f"sweep: {len(members)} members over {', '.join(sweeps)}")
    t0 = time.perf_counter()
    results = run_sweep(members, out_dir, log)
    wall = time.perf_counter() - t0
    keys = list(sweeps)
    print(format_table(results, keys))
    print(f"{len(results)} members in {wall:.1f}s; runs in {out_dir}/members/NNN "
          f"(python -m jax_mlp.sample --run {out_dir}/members/000)")
    _write_json(out_dir / "sweep.json", {"sweep": sweeps, "wall_seconds": wall, "members": results})
    with open(out_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["member", *keys, "train_loss", "dev_loss", "test_loss", "run_dir"])
        for r in sorted(results, key=lambda r: (r["dev_loss"] is None, r["dev_loss"] or 0.0)):
            writer.writerow([r["member"], *(r["values"][k] for k in keys), r["train_loss"], r["dev_loss"],
                             r["test_loss"], r.get("run_dir", "")])


if __name__ == "__main__":
    main()
