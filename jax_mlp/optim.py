"""Optax optimizers and learning-rate schedules by name, from the config."""

from __future__ import annotations

import inspect
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jax_mlp.config import OptimizerConfig, ScheduleConfig, TransformsConfig, _suggest
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
        if name.startswith("_") or name in _NOT_OPTIMIZERS or not callable(fn) or isinstance(fn, type):
            continue
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            continue
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


def _value_arg(fn: Callable) -> str:
    params = inspect.signature(fn).parameters
    return next(a for a in ("peak_value", "init_value", "value") if a in params)


def make_schedule(sched: ScheduleConfig, learning_rate) -> optax.Schedule | float:
    """The schedule (or constant) for a learning rate that may be a traced array; no validation."""
    if sched.name in ("none", ""):
        return learning_rate
    fn = getattr(optax, sched.name)
    return fn(**{_value_arg(fn): learning_rate, **sched.kwargs})


def _decay_mask(transforms: TransformsConfig) -> Callable:
    """Decay the weight matrices W*; biases, norm gains and shifts, and the embedding only if asked."""
    def mask(params):
        def wanted(name):
            if name == "C":
                return transforms.decay_embedding
            return True if name.startswith("W") else transforms.decay_biases
        return {k: wanted(k) for k in params}
    return mask


def make_tx(opt: OptimizerConfig, sched: ScheduleConfig, transforms: TransformsConfig | None = None,
            learning_rate=None, opt_kwargs: dict | None = None) -> optax.GradientTransformation:
    """The optax transformation of the config; learning_rate and kwargs may be traced (sweeps). No validation."""
    transforms = transforms or TransformsConfig()
    lr = make_schedule(sched, opt.learning_rate if learning_rate is None else learning_rate)
    fn = getattr(optax, opt.name)
    kwargs = {**opt.kwargs, **(opt_kwargs or {})}
    parts = []
    if transforms.clip_global_norm > 0:
        parts.append(optax.clip_by_global_norm(transforms.clip_global_norm))
    if transforms.weight_decay > 0:
        # Decoupled decay (Loshchilov & Hutter): the optimizer's direction at unit rate,
        # plus wd * p on the masked leaves, all scaled by the (scheduled) learning rate.
        parts += [fn(learning_rate=1.0, **kwargs), optax.scale(-1.0),
                  optax.add_decayed_weights(transforms.weight_decay, mask=_decay_mask(transforms)),
                  optax.scale_by_learning_rate(lr)]
    else:
        parts.append(fn(learning_rate=lr, **kwargs))
    tx = parts[0] if len(parts) == 1 else optax.chain(*parts)
    if transforms.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=transforms.accumulate_steps)
    return tx


def validate(opt: OptimizerConfig, sched: ScheduleConfig) -> None:
    """Check names and keywords of the optimizer and schedule, naming what is accepted."""
    names = optimizer_names()
    if opt.name not in names:
        raise UserError(f"unknown optimizer '{opt.name}'{_suggest(opt.name, names)} (accepted: {', '.join(names)})")
    _check_kwargs(f"optax.{opt.name}", getattr(optax, opt.name), opt.kwargs, reserved=("learning_rate",))
    if sched.name in ("none", ""):
        if sched.kwargs:
            raise UserError(f"schedule 'none' takes no keywords, got {', '.join(sched.kwargs)}")
        return
    if sched.name not in SCHEDULES:
        raise UserError(f"unknown schedule '{sched.name}'{_suggest(sched.name, SCHEDULES)}"
                        f" (accepted: none, {', '.join(SCHEDULES)})")
    fn = getattr(optax, sched.name)
    _check_kwargs(f"optax.{sched.name}", fn, {_value_arg(fn): 1.0, **sched.kwargs})
    try:
        lr0 = float(jax.jit(make_schedule(sched, opt.learning_rate))(0))
    except Exception as e:  # optax validates lazily and raises many types
        raise UserError(f"optax.{sched.name} rejected its arguments {sched.kwargs}: {_one_line(e)}") from None
    if not jnp.isfinite(lr0):
        raise UserError(f"optax.{sched.name} gives a non-finite learning rate at step 0: {lr0}")


def build_optimizer(opt: OptimizerConfig, sched: ScheduleConfig, transforms: TransformsConfig | None = None
                    ) -> tuple[optax.GradientTransformation, Callable]:
    """The optax transformation named in the config, and a function step -> learning rate."""
    validate(opt, sched)
    try:
        tx = make_tx(opt, sched, transforms)
    except Exception as e:
        raise UserError(f"optax.{opt.name} rejected its arguments {opt.kwargs}: {_one_line(e)}") from None
    lr = learning_rate_fn(make_schedule(sched, opt.learning_rate))
    k = (transforms or TransformsConfig()).accumulate_steps
    return tx, (lr if k == 1 else (lambda step: lr(step // k)))


def learning_rate_fn(lr: optax.Schedule | float | None) -> Callable[[int], float | None]:
    """step -> learning rate as a host float (None where the optimizer does not expose one)."""
    if lr is None:
        return lambda step: None
    if callable(lr):
        lr = jax.jit(lr)  # one compile, where each jnp op of the schedule would compile on its own
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
