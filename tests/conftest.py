"""Shared fixtures: makemore's names.txt (by path, never copied) and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The CLIs keep compiled programs in ~/.cache/jax_mlp; tests leave the user's cache
# alone (an empty JAX_COMPILATION_CACHE_DIR turns it off, here and in subprocesses).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")

ROOT = Path(__file__).resolve().parents[1]
NAMES = Path(os.environ.get("JAX_MLP_NAMES", ROOT.parent / "shared" / "data" / "names.txt"))


@pytest.fixture(scope="session")
def names_path() -> Path:
    if not NAMES.exists():
        pytest.skip(f"makemore's names.txt not found at {NAMES} (set JAX_MLP_NAMES)")
    return NAMES


def run_module(module: str, *args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m module args...` in a fresh process, capturing text output."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
