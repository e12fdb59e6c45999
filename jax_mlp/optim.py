"""Optax optimizers and learning-rate schedules by name, from the config."""

from __future__ import annotations

import inspect
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jax_mlp.config import OptimizerConfig, ScheduleConfig, _suggest
from jax_mlp.errors import UserError

# Optax functions that take a learning rate but are not whole optimizers, or need
# more than gradients in `update` (lbfgs wants the loss value and function).
_NOT_OPTIMIZERS = {"scale_by_learning_rate", "scale_by_rprop", "lbfgs"}

SCHEDULES = (
    "constant_schedule", "cosine_decay_schedule", "cosine_onecycle_schedule", "exponential_decay",
    "linear_onecycle_schedule", "linear_schedule", "piecewise_constant_schedule",
    "piecewise_interpolate_schedule", "polynomial_schedule", "warmup_constant_schedule",
    "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule",
)


def optimizer_names() -> list[str]:
    """Every optax optimizer that can be named in `[optimizer] name`."""
    names = []
    for name in dir(optax):
        fn = getattr(optax, name)
        if name.startswith("_") or name in _NOT_OPTIMIZERS or not inspect.isfunction(fn):
            continue
        params = list(inspect.signature(fn).parameters)
        if params and params[0] == "learning_rate":
            names.append(name)
    return sorted(names)


def _check_kwargs(what: str, fn: Callable, kwargs: dict, reserved: tuple[str, ...] = ()) -> None:
    params = inspect.signature(fn).parameters
    accepted = [p for p in params if p not in reserved]
    for key in kwargs:
        if key not in accepted:
            raise UserError(f"unknown keyword '{key}' for {what}{_suggest(key, accepted)}"
                            f" (accepted: {', '.join(accepted) or 'none'})")
    missing = [p for p, v in params.items()
               if v.default is inspect.Parameter.empty and p not in kwargs and p not in reserved]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}; set it in the config section")


def build_schedule(sched: ScheduleConfig, learning_rate: float) -> optax.Schedule | float:
    """The learning-rate schedule; its value argument, when not given, is `learning_rate`."""
    if sched.name in ("none", ""):
        if sched.kwargs:
            raise UserError(f"schedule 'none' takes no keywords, got {', '.join(sched.kwargs)}")
        return learning_rate
    if sched.name not in SCHEDULES:
        raise UserError(f"unknown schedule '{sched.name}'{_suggest(sched.name, SCHEDULES)}"
                        f" (accepted: none, {', '.join(SCHEDULES)})")
    fn = getattr(optax, sched.name)
    params = inspect.signature(fn).parameters
    value_arg = next(a for a in ("peak_value", "init_value", "value") if a in params)
    kwargs = {value_arg: learning_rate, **sched.kwargs}
    _check_kwargs(f"optax.{sched.name}", fn, kwargs)
    try:
        schedule = fn(**kwargs)
        lr0 = float(schedule(0))
    except Exception as e:  # optax validates lazily and raises many types
        raise UserError(f"optax.{sched.name} rejected its arguments {sched.kwargs}: {_one_line(e)}") from None
    if not jnp.isfinite(lr0):
        raise UserError(f"optax.{sched.name} gives a non-finite learning rate at step 0: {lr0}")
    return schedule


def build_optimizer(opt: OptimizerConfig, sched: ScheduleConfig) -> tuple[optax.GradientTransformation, Callable]:
    """The optax transformation named in the config, and a function step -> learning rate."""
    names = optimizer_names()
    if opt.name not in names:
        raise UserError(f"unknown optimizer '{opt.name}'{_suggest(opt.name, names)} (accepted: {', '.join(names)})")
    fn = getattr(optax, opt.name)
    _check_kwargs(f"optax.{opt.name}", fn, opt.kwargs, reserved=("learning_rate",))
    lr = build_schedule(sched, opt.learning_rate)
    try:
        tx = fn(learning_rate=lr, **opt.kwargs)
    except Exception as e:
        raise UserError(f"optax.{opt.name} rejected its arguments {opt.kwargs}: {_one_line(e)}") from None
    return tx, learning_rate_fn(lr)


def learning_rate_fn(lr: optax.Schedule | float | None) -> Callable[[int], float | None]:
    """step -> learning rate as a host float (None where the optimizer does not expose one)."""
    if lr is None:
        return lambda step: None
    if callable(lr):
        return lambda step: float(lr(step))
    return lambda step: float(lr)


def check_optimizer(tx: optax.GradientTransformation, params, name: str) -> None:
    """Trace one update abstractly, so a bad keyword value fails here, in one line, not mid-run."""
    try:
        state = jax.eval_shape(tx.init, params)
        jax.eval_shape(lambda g, s, p: tx.update(g, s, p), params, state, params)
    except Exception as e:
        raise UserError(f"optimizer {name} cannot be used with these settings: {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
