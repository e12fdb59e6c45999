"""The bench runs end to end and reports complete, sane figures (never a speed assertion)."""

import json
import math

from conftest import run_module


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_bench_writes_complete_json(tmp_path, names_path):
    out = tmp_path / "bench.json"
    proc = run_module("jax_mlp.bench", "--quick", "--data", str(names_path), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    sps = r["steps_per_second"]
    assert positive(sps["jax_mlp"]) and positive(sps["jax_step_loop"])
    assert sps["torch_eager"] is None or positive(sps["torch_eager"])
    assert 0 < r["roofline_fraction"] < 1.5 and 0 < r["batch_2048"]["roofline_fraction"] < 1.5
    assert positive(r["compile_seconds"]) and positive(r["matmul_peak_gflops"])
    assert positive(r["sample_names_per_second"]["jax_mlp"]) and positive(r["sample_names_per_second"]["python_loop"])
    assert positive(r["eval_examples_per_second"]) and positive(r["peak_rss_mb"])
    assert r["num_params"] == 11897 and r["flops_per_step"] == 6 * 32 * (30 * 200 + 200 * 27)
    assert len(r["memory"]) == 2 and all(positive(v) for v in r["memory"].values())
    assert set(r["examples_per_second_by_batch"]) == {"32", "256"}
    assert all(positive(v) for v in r["examples_per_second_by_batch"].values())
    assert set(r["examples_per_second_by_simulated_devices"]) == {"1", "2"}
    assert all(positive(v) for v in r["examples_per_second_by_simulated_devices"].values())
    assert positive(r["sweep"]["examples_per_second"]) and r["sweep"]["members"] == 16
    assert positive(r["sample_names_per_second"]["jax_mlp_forward_per_character"])
    # Ratios are taken within each round of timings: a median inside its lowest and highest.
    ratios = [r["ratios"]["jax_mlp_vs_jax_step_loop"], r["ratios"]["sampling_vs_python_loop"],
              {"median": r["roofline_fraction"], "spread": r["roofline_fraction_spread"]},
              {"median": r["batch_2048"]["roofline_fraction"], "spread": r["batch_2048"]["roofline_fraction_spread"]},
              {"median": r["sweep"]["vs_single_run"], "spread": r["sweep"]["vs_single_run_spread"]}]
    if sps["torch_eager"] is not None:
        ratios.append(r["ratios"]["jax_mlp_vs_torch_eager"])
    for q in ratios:
        lo, hi = q["spread"]
        assert positive(lo) and lo <= q["median"] <= hi
    run = r["whole_run"]
    assert run["steps"] == 200 and positive(run["cold_cache_seconds"]) and positive(run["seconds"])
    assert "jax_mlp is" in proc.stdout and "steps/s" in proc.stdout and "process start to exit" in proc.stdout


def test_bench_json_path_must_be_writable(tmp_path):
    proc = run_module("jax_mlp.bench", "--quick", "--json", str(tmp_path / "no" / "such" / "dir.json"))
    assert proc.returncode == 2 and "existing directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
