"""Configs are data: TOML files mapped onto frozen dataclasses, overridable by dotted flags.

The defaults are the lecture's final run (configs/lecture.toml), so a bare
`python -m jax_mlp.train` trains the lecture's model.  Layers apply in order:
defaults, then the TOML file, then `--SECTION.FIELD VALUE` flags.  The
`optimizer` and `schedule` sections also take any keyword argument of the named
optax function; a layer that sets `name` drops the keyword arguments set below
it, since they belonged to the previous function.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jax_mlp.errors import UserError


def _f(default, doc, **kw):
    if isinstance(default, dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": doc}, **kw)
    return field(default=default, metadata={"help": doc}, **kw)


@dataclass(frozen=True)
class DataConfig:
    path: str = _f("", "text file, one item (name) per line; empty = the bundled SSA 2017 names")
    block_size: int = _f(3, "characters of context the model sees")
    split_seed: int = _f(42, "seed of random.shuffle for the 80/10/10 train/dev/test split")
    first_n: int = _f(0, "if > 0: train on only the first N items, unshuffled, no dev/test (the overfit demo)")


@dataclass(frozen=True)
class ModelConfig:
    n_embd: int = _f(10, "embedding size of each character (columns of C)")
    n_hidden: int = _f(200, "units in the tanh hidden layer")
    init: str = _f("lecture", "'lecture' (all N(0,1), as torch.randn), 'part3' (lecture part 3's scaled-down "
                              "init) or 'kaiming' (gain/sqrt(fan_in))")
    n_layers: int = _f(1, "hidden layers")
    activation: str = _f("tanh", "hidden activation: tanh, relu or gelu")
    norm: str = _f("none", "normalisation after each hidden matmul: none, layernorm or batchnorm")
    dropout: float = _f(0.0, "dropout rate after each hidden layer while training (0 = off; never at eval)")
    compute_dtype: str = _f("float32", "matmul precision: float32, or bfloat16 (params and optimizer stay float32)")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _f("sgd", "an optax optimizer, e.g. sgd, adam, adamw (see --list-optimizers)")
    learning_rate: float = _f(0.1, "learning rate; also the starting/peak value of a schedule that does not set it")
    kwargs: dict = _f({}, "other keyword arguments of the optax optimizer, e.g. momentum, b1, weight_decay")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = _f("piecewise_constant_schedule", "an optax schedule, or 'none' for a constant learning rate")
    kwargs: dict = _f(
        {"boundaries_and_scales": {100000: 0.1}},
        "keyword arguments of the optax schedule, e.g. boundaries_and_scales, decay_steps",
    )


@dataclass(frozen=True)
class TransformsConfig:
    clip_global_norm: float = _f(0.0, "clip gradients to this global norm before the optimizer; 0 = off")
    weight_decay: float = _f(0.0, "decoupled weight decay (p -= lr * wd * p) added after the optimizer; 0 = off")
    decay_biases: bool = _f(False, "apply weight_decay to the biases (and norm gains and shifts) too")
    decay_embedding: bool = _f(False, "apply weight_decay to the embedding table C too")
    accumulate_steps: int = _f(1, "average gradients over this many steps per update (optax.MultiSteps)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(200000, "optimizer steps")
    batch_size: int = _f(32, "examples per minibatch, sampled with replacement on the device")
    full_batch: bool = _f(False, "use every training example in every step (the overfit demo)")
    seed: int = _f(2147483647, "seed of the parameter init and minibatch sampling keys")
    log_every: int = _f(10000, "steps between log points (the host syncs only there)")
    eval_every: int = _f(0, "steps between dev-loss evaluations during training; 0 = only at the end")
    out_dir: str = _f("runs/lecture", "directory for config, metrics, summary and checkpoints")
    checkpoint_every: int = _f(50000, "steps between checkpoints (one is always written at the end); 0 = end only")
    keep_checkpoints: int = _f(3, "newest step checkpoints kept, besides the best by dev loss")
    num_samples: int = _f(20, "names to sample and print at the end")
    device: str = _f("", "platform to run on: cpu, gpu or tpu; empty = JAX's default")
    num_devices: int = _f(0, "devices to shard each batch over (data parallel); 0 = all of the platform's")
    distributed: bool = _f(False, "call jax.distributed.initialize (multi-host); the fields below or the environment")
    coordinator_address: str = _f("", "host:port of process 0, for distributed; empty = detect (Slurm, TPU pods)")
    num_processes: int = _f(0, "processes in a distributed run; 0 = detect")
    process_id: int = _f(-1, "this process's index in a distributed run; -1 = detect")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "optimizer": OptimizerConfig,
                  "schedule": ScheduleConfig, "transforms": TransformsConfig, "train": TrainConfig}
SECTION_NAMES = tuple(_SECTION_TYPES)
KWARG_SECTIONS = ("optimizer", "schedule")
INITS = ("lecture", "part3", "kaiming")
ACTIVATIONS = ("tanh", "relu", "gelu")
NORMS = ("none", "layernorm", "batchnorm")
DTYPES = ("float32", "bfloat16")
PLATFORMS = ("", "cpu", "gpu", "tpu")


def section_fields(section: str) -> dict[str, dataclasses.Field]:
    """The named fields of a section, without the free-form `kwargs`."""
    return {f.name: f for f in dataclasses.fields(_SECTION_TYPES[section]) if f.name != "kwargs"}


def all_keys() -> list[str]:
    """Every `section.field` key, as the CLI spells it."""
    return [f"{s}.{k}" for s in _SECTION_TYPES for k in section_fields(s)]


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def parse_literal(text: str) -> Any:
    """A CLI value for a free-form keyword: a TOML literal (1e-3, true, [1, 2], {a = 1}) or else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _coerce(key: str, ftype: str, value: Any, from_cli: bool) -> Any:
    ftype = ftype if isinstance(ftype, str) else ftype.__name__
    if ftype == "str":
        if from_cli or isinstance(value, str):
            return str(value)
        raise UserError(f"{key} must be a string, got {value!r}")
    if ftype == "bool":
        if isinstance(value, bool):
            return value
        if from_cli and str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise UserError(f"{key} must be true or false, got {value!r}")
    if ftype == "int":
        if from_cli:
            try:
                return int(value)
            except ValueError:
                raise UserError(f"{key} must be an integer, got {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{key} must be an integer, got {value!r}")
    if ftype == "float":
        if from_cli:
            try:
                value = float(value)
            except ValueError:
                raise UserError(f"{key} must be a number, got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    raise AssertionError(f"unhandled field type {ftype}")


def _int_keys(value: Any) -> Any:
    # TOML table keys are strings; optax wants step boundaries ({100000 = 0.1}) as ints.
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def _check_ranges(cfg: Config) -> None:
    at_least = {
        "data.block_size": (cfg.data.block_size, 1), "data.first_n": (cfg.data.first_n, 0),
        "model.n_embd": (cfg.model.n_embd, 1), "model.n_hidden": (cfg.model.n_hidden, 1),
        "train.steps": (cfg.train.steps, 0), "train.batch_size": (cfg.train.batch_size, 1),
        "train.log_every": (cfg.train.log_every, 1), "train.eval_every": (cfg.train.eval_every, 0),
        "train.num_samples": (cfg.train.num_samples, 0), "train.checkpoint_every": (cfg.train.checkpoint_every, 0),
        "train.keep_checkpoints": (cfg.train.keep_checkpoints, 1), "data.split_seed": (cfg.data.split_seed, 0),
        "train.seed": (cfg.train.seed, 0), "transforms.accumulate_steps": (cfg.transforms.accumulate_steps, 1),
    }
    for key, (value, low) in at_least.items():
        if value < low:
            raise UserError(f"{key} must be >= {low}, got {value}")
    if cfg.train.seed >= 2**32:  # jax.random.key keeps only 32 bits without x64
        raise UserError(f"train.seed must be < 2**32 = 4294967296, got {cfg.train.seed}")
    if cfg.model.n_layers < 1:
        raise UserError(f"model.n_layers must be >= 1, got {cfg.model.n_layers}")
    if cfg.model.activation not in ACTIVATIONS:
        raise UserError(f"model.activation must be one of {', '.join(ACTIVATIONS)}, got {cfg.model.activation!r}")
    if cfg.model.norm not in NORMS:
        raise UserError(f"model.norm must be one of {', '.join(NORMS)}, got {cfg.model.norm!r}")
    if not 0 <= cfg.model.dropout < 1:
        raise UserError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    if cfg.model.compute_dtype not in DTYPES:
        raise UserError(f"model.compute_dtype must be one of {', '.join(DTYPES)}, got {cfg.model.compute_dtype!r}")
    if cfg.train.device not in PLATFORMS:
        raise UserError(f"train.device must be cpu, gpu, tpu or empty (JAX's default), got {cfg.train.device!r}")
    if cfg.train.num_devices < 0:
        raise UserError(f"train.num_devices must be >= 0 (0 = all), got {cfg.train.num_devices}")
    if cfg.model.init not in INITS:
        raise UserError(f"model.init must be one of {', '.join(INITS)}, got {cfg.model.init!r}")
    for key in ("clip_global_norm", "weight_decay"):
        if getattr(cfg.transforms, key) < 0:
            raise UserError(f"transforms.{key} must be >= 0 (0 = off), got {getattr(cfg.transforms, key)}")
    if cfg.optimizer.learning_rate <= 0:
        raise UserError(f"optimizer.learning_rate must be > 0, got {cfg.optimizer.learning_rate}")
    if not cfg.train.out_dir:
        raise UserError("train.out_dir must be a directory path, got an empty string")


def resolve(layers: list[tuple[dict, bool]]) -> Config:
    """Apply layers of `{section: {key: value}}` over the defaults; each layer is (table, from_cli)."""
    base = Config()
    values = {s: {} for s in _SECTION_TYPES}
    kwargs = {s: dict(getattr(base, s).kwargs) for s in KWARG_SECTIONS}
    for table, from_cli in layers:
        for section, entries in table.items():
            if section not in _SECTION_TYPES:
                raise UserError(f"unknown config section [{section}]{_suggest(section, _SECTION_TYPES)}"
                                f" (sections: {', '.join(_SECTION_TYPES)})")
            if not isinstance(entries, dict):
                raise UserError(f"[{section}] must be a table of settings, got {entries!r}")
            known = section_fields(section)
            if section in KWARG_SECTIONS and "name" in entries:
                kwargs[section] = {}
            for key, value in entries.items():
                if key in known:
                    values[section][key] = _coerce(f"{section}.{key}", known[key].type, value, from_cli)
                elif section in KWARG_SECTIONS:
                    kwargs[section][key] = _int_keys(parse_literal(value) if from_cli else value)
                else:
                    raise UserError(f"unknown config key '{section}.{key}'{_suggest(f'{section}.{key}', all_keys())}"
                                    f" ([{section}] takes: {', '.join(known)})")
    sections = {}
    for s, cls in _SECTION_TYPES.items():
        extra = {"kwargs": kwargs[s]} if s in KWARG_SECTIONS else {}
        sections[s] = cls(**values[s], **extra)
    cfg = Config(**sections)
    _check_ranges(cfg)
    return cfg


def read_toml(path: str | Path) -> dict:
    """Read a TOML config file, turning every failure into a one-line UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise UserError(f"config file {str(p)!r} is a directory, expected a .toml file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {str(p)!r} is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"cannot read config file {str(p)!r}: {e.strerror}") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None, base: Config | None = None) -> Config:
    """The config of a TOML file (or the defaults) with `{"section.key": "text"}` CLI overrides applied.

    `base` (a resumed run's saved config) stands between the defaults and the file.
    """
    layers = [] if base is None else [(to_dict(base), False)]
    if path is not None:
        layers.append((read_toml(path), False))
    if overrides:
        table: dict = {}
        for dotted, text in overrides.items():
            section, _, key = dotted.partition(".")
            table.setdefault(section, {})[key] = text
        layers.append((table, True))
    return resolve(layers)


def to_dict(cfg: Config) -> dict:
    """The config as nested plain data, the form saved next to a run."""
    out = {}
    for s in _SECTION_TYPES:
        sec = getattr(cfg, s)
        d = {k: getattr(sec, k) for k in section_fields(s)}
        if s in KWARG_SECTIONS:
            d.update(sec.kwargs)
        out[s] = d
    return out


def from_dict(d: dict) -> Config:
    """Rebuild a Config from `to_dict` output (as read back from TOML or JSON)."""
    return resolve([(d, False)])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The resolved config as a TOML file that `--config` reads back to the same Config."""
    lines = []
    for s, d in to_dict(cfg).items():
        lines.append(f"[{s}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in d.items()]
        lines.append("")
    return "\n".join(lines)
