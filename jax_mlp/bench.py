"""Benchmark jax_mlp against its peers, side by side in one process, on the same data and model.

    python -m jax_mlp.bench [--data FILE] [--quick] [--json PATH]

Every figure is a median over repeats after a warm-up. Loops that are compared are
timed in interleaved rounds, and a ratio is the median of the per-round ratios, since
the machines here are shared and noisy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_mlp.config import Config
from jax_mlp.data import make_dataset, read_words
from jax_mlp.errors import ArgumentParser, UserError, cli_entry
from jax_mlp.model import num_params
from jax_mlp.optim import build_optimizer
from jax_mlp.sample import sample_names, sample_tokens
from jax_mlp.train import evaluate, init_state, make_run_steps, make_train_step

DEFAULT_DATA = Path("../shared/data/names.txt")


def _median_rate(fn, work: float, repeats: int) -> tuple[float, list[float]]:
    """Median of work/seconds over `repeats` timed calls of fn (already warmed up)."""
    rates = _rounds({"fn": (fn, work)}, repeats)["fn"]
    return statistics.median(rates), rates


def _rounds(cases: dict, repeats: int) -> dict[str, list[float]]:
    """work/seconds of each case `(fn, work)` (already warmed up), over `repeats` rounds.

    A round times every case once, one after another, so a change in the machine's load
    between rounds falls on all of them alike: a ratio taken within a round stays fair
    on a shared machine where absolute figures drift by 10% from minute to minute.
    """
    rates = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, work) in cases.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(work / (time.perf_counter() - t0))
    return rates


def _ratio(num: list[float], den: list[float], scale: float = 1.0) -> dict:
    """scale * num/den within each round: the median and the lowest and highest."""
    r = [scale * a / b for a, b in zip(num, den)]
    return {"median": statistics.median(r), "spread": [min(r), max(r)]}


def flops_per_step(batch: int, fan_in: int, n_hidden: int, vocab: int) -> float:
    """Matmul FLOPs of one training step: forward 2*B*MACs, backward twice that."""
    return 6.0 * batch * (fan_in * n_hidden + n_hidden * vocab)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_case(n: int, calls: int = 8) -> tuple:
    """`calls` n x n float32 matmuls through XLA, the work in GFLOP: the machine's matmul peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, b).block_until_ready()

    def go():
        for _ in range(calls):
            mm(a, b).block_until_ready()

    return go, calls * 2.0 * n**3 / 1e9


def jax_mlp_case(cfg: Config, ds, steps: int) -> tuple[tuple, float]:
    """jax_mlp's own training path (make_run_steps, the fused on-device loop): the case
    (`steps` steps, work in steps) and its compile time in seconds."""
    tx, _ = build_optimizer(cfg.optimizer, cfg.schedule)
    state = init_state(cfg, len(ds.vocab), tx)
    X, Y = jax.device_put(ds.X["train"]), jax.device_put(ds.Y["train"])
    run_steps = make_run_steps(tx, cfg.train.batch_size, False)
    t0 = time.perf_counter()
    compiled = run_steps.lower(state, X, Y, 0).compile()
    compile_seconds = time.perf_counter() - t0
    box = [compiled(state, X, Y, steps)[0]]  # warm-up
    jax.block_until_ready(box[0])

    def go():
        box[0], loss_sum = compiled(box[0], X, Y, steps)
        float(loss_sum)

    return (go, steps), compile_seconds


def bench_jax_mlp(cfg: Config, ds, steps: int, repeats: int) -> float:
    """jax_mlp's training path alone, median steps/s."""
    case, _ = jax_mlp_case(cfg, ds, steps)
    return _median_rate(*case, repeats)[0]


def jax_step_loop_case(cfg: Config, ds, steps: int) -> tuple:
    """The naive JAX loop: host samples the batch, one jitted step per Python iteration."""
    tx, _ = build_optimizer(cfg.optimizer, cfg.schedule)
    state = init_state(cfg, len(ds.vocab), tx)
    step = jax.jit(make_train_step(tx), donate_argnums=0)
    Xtr, Ytr = ds.X["train"], ds.Y["train"]
    rng = np.random.default_rng(0)
    box = [state]

    def go():
        for _ in range(steps):
            ix = rng.integers(0, len(Ytr), cfg.train.batch_size)
            box[0], metrics = step(box[0], (Xtr[ix], Ytr[ix]))
        float(metrics["loss"])

    go()
    return go, steps


def torch_eager_case(cfg: Config, ds, steps: int) -> tuple | None:
    """The lecture's PyTorch loop, written as in the video, on one thread; None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(1)
    Xtr, Ytr = torch.from_numpy(ds.X["train"]).long(), torch.from_numpy(ds.Y["train"]).long()
    V, d, H, blk = len(ds.vocab), cfg.model.n_embd, cfg.model.n_hidden, cfg.data.block_size
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((V, d), generator=g)
    W1 = torch.randn((blk * d, H), generator=g)
    b1 = torch.randn(H, generator=g)
    W2 = torch.randn((H, V), generator=g)
    b2 = torch.randn(V, generator=g)
    parameters = [C, W1, b1, W2, b2]
    for p in parameters:
        p.requires_grad = True

    def go():
        for _ in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (cfg.train.batch_size,))
            emb = C[Xtr[ix]]
            h = torch.tanh(emb.view(-1, blk * d) @ W1 + b1)
            logits = h @ W2 + b2
            loss = F.cross_entropy(logits, Ytr[ix])
            for p in parameters:
                p.grad = None
            loss.backward()
            for p in parameters:
                p.data += -0.1 * p.grad

    go()
    return go, steps


def torch_loop_sample(params: dict, block_size: int, num: int, seed: int = 0) -> list[int] | None:
    """The lecture's sampler as written there: PyTorch, one name at a time, one forward per character."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    C, W1, b1, W2, b2 = (torch.tensor(np.array(params[k])) for k in ("C", "W1", "b1", "W2", "b2"))
    g = torch.Generator().manual_seed(2147483647 + seed)
    lengths = []
    for _ in range(num):
        out, context = [], [0] * block_size
        while True:
            emb = C[torch.tensor([context])]
            h = torch.tanh(emb.view(1, -1) @ W1 + b1)
            logits = h @ W2 + b2
            probs = F.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1, generator=g).item()
            context = context[1:] + [ix]
            out.append(ix)
            if ix == 0:
                break
        lengths.append(len(out))
    return lengths


def sweep_case(cfg: Config, ds, members: int, steps: int):
    """A sweep of `members` lecture runs (4 learning rates x seeds), as jax_mlp.sweep runs them
    (vmapped programs, one per CPU core): the case (work in steps of each member) and the
    runner, to close when done."""
    from jax_mlp.sweep import GroupRunner

    lrs = [0.03, 0.05, 0.1, 0.2]
    cfgs = [dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, learning_rate=lrs[i % 4]),
                                train=dataclasses.replace(cfg.train, seed=i)) for i in range(members)]
    runner = GroupRunner(cfgs, ds)
    try:
        runner.advance(steps)  # warm-up
    except BaseException:
        runner.close()
        raise
    return (lambda: runner.advance(steps), steps), runner


_DEVICE_PROBE = """
import json, sys, time
import jax
from jax_mlp.config import Config
from jax_mlp.data import make_dataset, read_words
from jax_mlp.devices import Placement
from jax_mlp.optim import build_optimizer
from jax_mlp.train import init_state, make_run_steps
path, batch, steps = (sys.argv[1] or None), int(sys.argv[2]), int(sys.argv[3])
cfg = Config()
ds = make_dataset(read_words(path), 3)
tx, _ = build_optimizer(cfg.optimizer, cfg.schedule)
place = Placement.make(jax.devices(), batch, False)
state = place.replicate(init_state(cfg, len(ds.vocab), tx))
X, Y = place.replicate(ds.X["train"]), place.replicate(ds.Y["train"])
run = make_run_steps(tx, batch, False, batch_sharding=place.batch_sharding).lower(state, X, Y, 0).compile()
state, loss = run(state, X, Y, steps); float(loss)
rates = []
for _ in range(3):
    t = time.perf_counter(); state, loss = run(state, X, Y, steps); float(loss)
    rates.append(steps * batch / (time.perf_counter() - t))
print(json.dumps(sorted(rates)[1]))
"""


def bench_device_counts(data, counts: list[int], batch: int, steps: int) -> dict:
    """examples/s of the data-parallel path on n simulated CPU devices (a correctness check on CPU:
    simulated devices share the same cores), each count in its own process."""
    out = {}
    for n in counts:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        proc = subprocess.run([sys.executable, "-c", _DEVICE_PROBE, str(data or ""), str(batch), str(steps)],
                              env=env, capture_output=True, text=True, timeout=600)
        out[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    return out


def python_loop_sample(params: dict, block_size: int, num: int, seed: int = 0) -> list[int]:
    """The lecture's sampler in numpy, for machines without torch: one forward per character."""
    p = {k: np.asarray(v) for k, v in params.items()}
    rng = np.random.default_rng(seed)
    lengths = []
    for _ in range(num):
        context, out = [0] * block_size, []
        while True:
            emb = p["C"][context].reshape(1, -1)
            h = np.tanh(emb @ p["W1"] + p["b1"])
            logits = h @ p["W2"] + p["b2"]
            probs = np.exp(logits - logits.max())
            probs = (probs / probs.sum()).ravel()
            ix = int(rng.choice(len(probs), p=probs))
            context = context[1:] + [ix]
            if ix == 0 or len(out) >= 64:
                break
            out.append(ix)
        lengths.append(len(out))
    return lengths


def bench_whole_run(data: str | Path | None, steps: int, repeats: int) -> dict:
    """Wall seconds of `python -m jax_mlp.train` (the lecture config), process start to exit:
    once with an empty compile cache, then `repeats` times with it filled by that run."""
    def once(cache: str, out: str) -> float:
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | {"XDG_CACHE_HOME": cache}
        cmd = [sys.executable, "-m", "jax_mlp.train", "--train.steps", str(steps), "--train.out_dir", out,
               "--overwrite", "--quiet"] + (["--data.path", str(data)] if data else [])
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        return seconds

    with tempfile.TemporaryDirectory() as tmp:
        cold = once(tmp, f"{tmp}/run")
        warm = [once(tmp, f"{tmp}/run") for _ in range(repeats)]
    return {"steps": steps, "cold_cache_seconds": cold, "seconds": statistics.median(warm), "all": warm}


def run_bench(data: str | Path | None, quick: bool) -> dict:
    """Every measurement of the bench, as one dict (the --json output)."""
    words = read_words(data)
    cfg = Config()
    ds = make_dataset(words, cfg.data.block_size, cfg.data.split_seed)
    fan_in, H, V = cfg.data.block_size * cfg.model.n_embd, cfg.model.n_hidden, len(ds.vocab)
    repeats = 3 if quick else 7
    steps = 500 if quick else 20_000
    loop_steps = 200 if quick else 3_000
    results: dict = {"machine": {"platform": jax.devices()[0].platform, "devices": len(jax.devices()),
                                 "cpu": _cpu_name(), "cores": os.cpu_count(),
                                 "jax": jax.__version__, "optax": optax.__version__},
                     "data": str(data or "bundled"), "quick": quick, "repeats": repeats}

    # The figures that are compared with one another are timed in the same rounds.
    big = Config(train=dataclasses.replace(cfg.train, batch_size=2048))
    n_members = 16
    ours, compile_seconds = jax_mlp_case(cfg, ds, steps)
    cases = {"matmul_peak": matmul_peak_case(512 if quick else 2048), "jax_mlp": ours,
             "batch_2048": jax_mlp_case(big, ds, 20 if quick else 300)[0],
             "jax_step_loop": jax_step_loop_case(cfg, ds, loop_steps)}
    torch_eager = torch_eager_case(cfg, ds, loop_steps)
    if torch_eager is not None:
        cases["torch_eager"] = torch_eager
    cases["sweep"], runner = sweep_case(cfg, ds, n_members, steps // 4)
    try:
        rates = _rounds(cases, repeats)
    finally:
        runner.close()
    med = {name: statistics.median(r) for name, r in rates.items()}
    spread = {name: [min(r), max(r)] for name, r in rates.items()}
    fps, fps_big = flops_per_step(32, fan_in, H, V), flops_per_step(2048, fan_in, H, V)
    ours_sps = rates["jax_mlp"]

    results["steps_per_second"] = {"jax_mlp": med["jax_mlp"], "torch_eager": med.get("torch_eager"),
                                   "jax_step_loop": med["jax_step_loop"]}
    results["steps_per_second_spread"] = {k: spread[k] for k in ("jax_mlp", "torch_eager", "jax_step_loop")
                                          if k in spread}
    results["examples_per_second"] = {"jax_mlp": med["jax_mlp"] * 32}
    results["ratios"] = {"jax_mlp_vs_jax_step_loop": _ratio(ours_sps, rates["jax_step_loop"]),
                         "jax_mlp_vs_torch_eager": (_ratio(ours_sps, rates["torch_eager"])
                                                    if "torch_eager" in rates else None)}
    roofline_big = _ratio(rates["batch_2048"], rates["matmul_peak"], fps_big / 1e9)
    results["batch_2048"] = {"steps_per_second": med["batch_2048"],
                             "examples_per_second": med["batch_2048"] * 2048,
                             "gflops": med["batch_2048"] * fps_big / 1e9,
                             "roofline_fraction": roofline_big["median"],
                             "roofline_fraction_spread": roofline_big["spread"],
                             "steps_per_second_spread": spread["batch_2048"]}
    sweep_vs = _ratio(rates["sweep"], ours_sps, n_members)
    results["sweep"] = {"members": n_members, "steps_per_second": med["sweep"],
                        "examples_per_second": med["sweep"] * n_members * 32,
                        "vs_single_run": sweep_vs["median"], "vs_single_run_spread": sweep_vs["spread"]}
    batch_sizes = [32, 256] if quick else [32, 128, 512, 2048]
    results["examples_per_second_by_batch"] = {
        str(b): bench_jax_mlp(Config(train=dataclasses.replace(cfg.train, batch_size=b)), ds,
                              max(10, (steps * 32) // b // (4 if quick else 2)), repeats) * b
        for b in batch_sizes}
    results["examples_per_second_by_simulated_devices"] = bench_device_counts(
        data, [1, 2] if quick else [1, 2, 4, 8], 256, 50 if quick else 400)
    results["matmul_peak_gflops"] = med["matmul_peak"]
    results["matmul_peak_gflops_spread"] = spread["matmul_peak"]
    results["flops_per_step"] = fps
    roofline = _ratio(ours_sps, rates["matmul_peak"], fps / 1e9)
    results["roofline_fraction"] = roofline["median"]
    results["roofline_fraction_spread"] = roofline["spread"]
    results["compile_seconds"] = compile_seconds

    # Memory: the fused loop keeps nothing per step, so RSS must not grow with steps.
    tx, _ = build_optimizer(cfg.optimizer, cfg.schedule)
    run_steps = make_run_steps(tx, 32, False)
    state = init_state(cfg, V, tx)
    X, Y = jax.device_put(ds.X["train"]), jax.device_put(ds.Y["train"])
    few, many = (1_000, 20_000) if quick else (10_000, 1_000_000)
    state, _ = run_steps(state, X, Y, few)
    jax.block_until_ready(state)
    rss_few = _current_rss_mb()
    state, _ = run_steps(state, X, Y, many)
    jax.block_until_ready(state)
    results["memory"] = {f"rss_mb_after_{few}_steps": rss_few, f"rss_mb_after_{few + many}_steps": _current_rss_mb()}

    params = state.params
    n_names = 1_000 if quick else 10_000
    loop_names = 100 if quick else 1_000
    sample_names(params, ds.vocab, 3, n_names, jax.random.key(0))  # compile
    # The same sampler, made to run a forward per character (the table off), for comparison.
    per_char = lambda k: jax.device_get(sample_tokens(params, k, jnp.float32(1.0), num=n_names, block_size=3,
                                                      max_len=32, table=False))
    per_char(jax.random.key(0))  # compile
    loop = torch_loop_sample if torch_eager is not None else python_loop_sample
    samplers = _rounds({"jax_mlp": (lambda: sample_names(params, ds.vocab, 3, n_names, jax.random.key(1)), n_names),
                        "jax_mlp_forward_per_character": (lambda: per_char(jax.random.key(1)), n_names),
                        "python_loop": (lambda: loop(params, 3, loop_names), loop_names)}, repeats)
    results["sample_names_per_second"] = {k: statistics.median(r) for k, r in samplers.items()}
    results["sample_names_per_second"]["python_loop_kind"] = "torch" if torch_eager is not None else "numpy"
    results["ratios"]["sampling_vs_python_loop"] = _ratio(samplers["jax_mlp"], samplers["python_loop"])

    evaluate(params, ds.X["train"], ds.Y["train"])  # compile
    n_eval = len(ds.Y["train"])
    results["eval_examples_per_second"], _ = _median_rate(
        lambda: evaluate(params, ds.X["train"], ds.Y["train"]), n_eval, repeats)

    results["whole_run"] = bench_whole_run(data, 200 if quick else cfg.train.steps, 1 if quick else 3)
    results["num_params"] = num_params(params)
    results["peak_rss_mb"] = peak_rss_mb()
    return results


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def format_table(r: dict) -> str:
    """The bench's results as a text table with ratios."""
    sps, ratios = r["steps_per_second"], r["ratios"]
    fmt = lambda v: "n/a" if v is None else f"{v:,.0f}"
    times = lambda q: "n/a" if q is None else f"{q['median']:.1f}x (rounds {q['spread'][0]:.1f}-{q['spread'][1]:.1f}x)"
    pct = lambda m, sp: f"{m:.1%} (rounds {sp[0]:.1%}-{sp[1]:.1%})"
    lines = [
        f"machine: {r['machine']['cpu']} ({r['machine']['cores']} cores), {r['machine']['platform']} "
        f"x{r['machine']['devices']}, "
        f"jax {r['machine']['jax']}; medians of {r['repeats']} rounds, each timing every compared loop once",
        "",
        "training, lecture model, batch 32            steps/s   jax_mlp is",
        f"  jax_mlp (fused on-device loop)     {fmt(sps['jax_mlp']):>14}",
        f"  JAX, jitted step from a Python loop{fmt(sps['jax_step_loop']):>14}   "
        f"{times(ratios['jax_mlp_vs_jax_step_loop'])}",
        f"  PyTorch eager, as the lecture      {fmt(sps['torch_eager']):>14}   "
        f"{times(ratios['jax_mlp_vs_torch_eager'])}",
        f"  compute limit ({r['flops_per_step'] / 1e6:.2f} MFLOP/step at {r['matmul_peak_gflops']:.0f} GFLOP/s)"
        f"{fmt(r['matmul_peak_gflops'] * 1e9 / r['flops_per_step']):>8}   "
        f"{pct(r['roofline_fraction'], r['roofline_fraction_spread'])} of it",
        f"  compile: {r['compile_seconds']:.2f} s",
        "",
        f"sweep of {r['sweep']['members']} members (vmapped programs, one per CPU core): "
        f"{fmt(r['sweep']['examples_per_second'])} examples/s = "
        f"{times({'median': r['sweep']['vs_single_run'], 'spread': r['sweep']['vs_single_run_spread']})} "
        f"one run's {fmt(r['examples_per_second']['jax_mlp'])}",
        f"batch 2048: {fmt(r['batch_2048']['steps_per_second'])} steps/s, "
        f"{r['batch_2048']['gflops']:.0f} GFLOP/s = "
        f"{pct(r['batch_2048']['roofline_fraction'], r['batch_2048']['roofline_fraction_spread'])} "
        f"of the matmul peak (repeats: {' to '.join(fmt(v) for v in r['batch_2048']['steps_per_second_spread'])} "
        "steps/s)",
        f"sampling: {fmt(r['sample_names_per_second']['jax_mlp'])} names/s vs "
        f"{fmt(r['sample_names_per_second']['python_loop'])} for the lecture's per-character "
        f"{r['sample_names_per_second']['python_loop_kind']} loop "
        f"({times(ratios['sampling_vs_python_loop'])}; "
        f"{fmt(r['sample_names_per_second']['jax_mlp_forward_per_character'])} names/s with a forward per "
        "character instead of the table of every context)",
        f"evaluation: {fmt(r['eval_examples_per_second'])} examples/s (loss over the whole train split)",
        f"whole run, python -m jax_mlp.train ({r['whole_run']['steps']:,} steps), process start to exit: "
        f"{r['whole_run']['seconds']:.1f} s (median of {len(r['whole_run']['all'])}; "
        f"{r['whole_run']['cold_cache_seconds']:.1f} s with an empty compile cache)",
        "examples/s by batch size: " + ", ".join(f"{b}: {fmt(v)}" for b, v in r["examples_per_second_by_batch"].items()),
        "examples/s by simulated CPU devices (batch 256; the devices share 2 cores, so this checks the "
        "data-parallel path, not its speed): "
        + ", ".join(f"{n}: {fmt(v)}" for n, v in r["examples_per_second_by_simulated_devices"].items()),
        "memory (RSS MB): " + ", ".join(f"{k.removeprefix('rss_mb_')} {v:.0f}" for k, v in r["memory"].items())
        + f"; peak {r['peak_rss_mb']:.0f}",
    ]
    return "\n".join(lines)


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="python -m jax_mlp.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None,
                        help=f"names file (default: {DEFAULT_DATA} if present, else the bundled names)")
    parser.add_argument("--quick", action="store_true", help="a small version of everything (seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    data = args.data if args.data is not None else (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if args.json:
        out = Path(args.json)
        if out.is_dir() or not out.parent.exists():
            raise UserError(f"--json {args.json!r}: give a file path in an existing directory")
    results = run_bench(data, args.quick)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
