"""Where a run computes: the platform, its devices, and a data-parallel mesh over them.

JAX's own sharding is the whole engine: parameters and optimizer state replicated
(`NamedSharding(mesh, P())`), each block of minibatches split along the batch axis
(`P(None, "data")`), and XLA inserts the gradient all-reduce. Many hosts join through
`jax.distributed.initialize`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from jax_mlp.config import TrainConfig
from jax_mlp.errors import UserError

_initialized = False


def use_compile_cache() -> None:
    """Keep compiled programs on disk, so a rerun of the same config skips XLA compilation
    (the lecture run: about 1 s of its startup on the bench machine).

    The cache is $XDG_CACHE_HOME/jax_mlp/xla (~/.cache/jax_mlp/xla); JAX's own
    JAX_COMPILATION_CACHE_DIR, when set, wins, and set to empty it turns the cache off.
    """
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jax_mlp" / "xla"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache here: every run compiles, nothing else changes
        return
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # ours all compile in < 1 s


def init_distributed(train: TrainConfig) -> None:
    """jax.distributed.initialize from the config, or from the environment (Slurm, TPU pods) where it is empty."""
    global _initialized
    if not train.distributed or _initialized:
        return
    if train.device in ("", "cpu"):
        # CPU devices of different processes talk through gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=train.coordinator_address or None,
                                   num_processes=train.num_processes or None,
                                   process_id=train.process_id if train.process_id >= 0 else None)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]} "
                        "(set train.coordinator_address, train.num_processes and train.process_id, "
                        "or run under Slurm / on a TPU pod)") from None
    _initialized = True


def select_devices(platform: str, num: int) -> list:
    """The first `num` devices (0 = all) of `platform` ('' = JAX's default), across all processes."""
    try:
        devices = jax.devices(platform or None)
    except RuntimeError:
        available = sorted({d.platform for d in jax.devices()})
        raise UserError(f"train.device {platform!r} is not available here; this machine has: "
                        f"{', '.join(available)} (install the matching jax extra, e.g. jax_mlp[cuda12])") from None
    if num > len(devices):
        raise UserError(f"train.num_devices is {num}, but {devices[0].platform} has {len(devices)} device(s)")
    return devices[:num] if num else devices


@dataclass
class Placement:
    """The devices of a run and how its arrays are laid out on them."""

    devices: list
    mesh: jax.sharding.Mesh | None

    @classmethod
    def make(cls, devices: list, batch_size: int, full_batch: bool) -> Placement:
        if len(devices) == 1:
            return cls(devices, None)
        if not full_batch and batch_size % len(devices):
            raise UserError(f"train.batch_size {batch_size} does not divide over {len(devices)} devices; "
                            f"use a multiple of {len(devices)} or set train.num_devices")
        # Auto axis types: with jax.make_mesh's default explicit axes, gathering C[X] from
        # a data-sharded X is a sharding type error on jax 0.10.
        mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)
        return cls(devices, mesh)

    @property
    def batch_sharding(self):
        """Blocks of minibatches (steps, batch, ...) split along the batch axis; None on one device."""
        return None if self.mesh is None else NamedSharding(self.mesh, P(None, "data"))

    def replicate(self, tree):
        """Every leaf whole on every device (each process passes the same host values)."""
        if self.mesh is None:
            return jax.device_put(tree, self.devices[0])
        sharding = NamedSharding(self.mesh, P())

        def put(x):
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(put(jax.random.key_data(x)))
            return jax.make_array_from_process_local_data(sharding, np.asarray(to_host(x)))

        return jax.tree.map(put, tree)

    def abstract(self, tree):
        """The shapes, dtypes and layout `replicate` gives `tree`'s leaves: enough to compile
        a program before the values exist."""
        sharding = SingleDeviceSharding(self.devices[0]) if self.mesh is None else NamedSharding(self.mesh, P())
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

    @property
    def local_device(self):
        """A device of this process, for host-side work such as evaluation and sampling."""
        return next(d for d in self.devices if d.process_index == jax.process_index())


def to_host(x):
    """A host copy of an array; for a replicated array spread over processes, this process's copy."""
    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(to_host(jax.random.key_data(x)))
        if not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def is_main_process() -> bool:
    """Only process 0 prints and writes files."""
    return jax.process_index() == 0
