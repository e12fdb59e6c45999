"""The lecture's MLP (Bengio et al. 2003): parameters as a dict pytree, a pure forward and loss."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": jax.nn.gelu}
GAINS = {"tanh": 5 / 3, "relu": 2**0.5, "gelu": 2**0.5}  # Kaiming gains for the init
BN_MOMENTUM = 0.001  # running statistics: 0.999 * old + 0.001 * batch, as in lecture part 3
EPS = 1e-5


@dataclass(frozen=True)
class Arch:
    """The model's structure beyond its sizes; the default is the lecture's MLP."""

    n_layers: int = 1
    activation: str = "tanh"
    norm: str = "none"
    dropout: float = 0.0
    compute_dtype: str = "float32"

    @classmethod
    def of(cls, model_cfg) -> Arch:
        """The Arch of a ModelConfig."""
        return cls(model_cfg.n_layers, model_cfg.activation, model_cfg.norm, model_cfg.dropout,
                   model_cfg.compute_dtype)

    @property
    def plain(self) -> bool:
        """The lecture's own model: no normalisation, no dropout, one tanh layer."""
        return self.n_layers == 1 and self.activation == "tanh" and self.norm == "none" and self.dropout == 0


LECTURE = Arch()


def param_shapes(vocab_size: int, block_size: int, n_embd: int, n_hidden: int, arch: Arch = LECTURE) -> dict:
    """Names and shapes of the parameters: C, then W_i, b_i (no b_i before batchnorm), g_i, s_i
    (gain, shift) per hidden layer, then the output W_{n+1}, b_{n+1}."""
    shapes = {"C": (vocab_size, n_embd)}
    fan_in = block_size * n_embd
    for i in range(1, arch.n_layers + 1):
        shapes[f"W{i}"] = (fan_in, n_hidden)
        if arch.norm != "batchnorm":  # batchnorm subtracts the mean: a bias before it does nothing
            shapes[f"b{i}"] = (n_hidden,)
        if arch.norm != "none":
            shapes[f"g{i}"], shapes[f"s{i}"] = (n_hidden,), (n_hidden,)
        fan_in = n_hidden
    out = arch.n_layers + 1
    shapes[f"W{out}"], shapes[f"b{out}"] = (n_hidden, vocab_size), (vocab_size,)
    return shapes


def init_params(key: jax.Array, vocab_size: int, block_size: int, n_embd: int, n_hidden: int,
                init: str = "lecture", arch: Arch = LECTURE) -> Params:
    """Parameters of `param_shapes`. 'lecture' draws every weight and bias from N(0,1) (torch.randn);
    'part3' is lecture part 3's first fix (W1 x0.2, b1 x0.01, output W x0.01, output b 0);
    'kaiming' scales hidden weights by gain/sqrt(fan_in). Norm gains start at 1, shifts at 0."""
    shapes = param_shapes(vocab_size, block_size, n_embd, n_hidden, arch)
    # One draw for all of them, cut into pieces: a single RNG call compiles in a
    # fraction of the time of five (1.2 s -> 0.2 s on the bench machine).
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    pieces = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    params = {k: piece.reshape(shape) for (k, shape), piece in zip(shapes.items(), pieces)}
    out = arch.n_layers + 1
    for i in range(1, arch.n_layers + 1):
        if arch.norm != "none":
            params[f"g{i}"], params[f"s{i}"] = jnp.ones_like(params[f"g{i}"]), jnp.zeros_like(params[f"s{i}"])
        fan_in = shapes[f"W{i}"][0]
        if init == "kaiming":
            # Lecture part 3: gain over sqrt(fan_in) keeps the hidden layers out of saturation.
            params[f"W{i}"] = params[f"W{i}"] * GAINS[arch.activation] / fan_in**0.5
        elif init == "part3":
            params[f"W{i}"] = params[f"W{i}"] * 0.2
        if init != "lecture" and f"b{i}" in params:
            params[f"b{i}"] = params[f"b{i}"] * 0.01
    if init in ("kaiming", "part3"):
        # A small output layer makes the first logits nearly uniform: loss ~ln(vocab), not ~20.
        params[f"W{out}"] = params[f"W{out}"] * 0.01
        params[f"b{out}"] = jnp.zeros_like(params[f"b{out}"])
    elif init != "lecture":
        raise ValueError(f"unknown init {init!r}")
    return params


def init_model_state(n_hidden: int, arch: Arch = LECTURE) -> dict:
    """What the model keeps besides parameters: batchnorm's running mean and variance per layer."""
    if arch.norm != "batchnorm":
        return {}
    return {k: v for i in range(1, arch.n_layers + 1)
            for k, v in ((f"mean{i}", jnp.zeros(n_hidden)), (f"var{i}", jnp.ones(n_hidden)))}


def num_params(params: Params) -> int:
    """Total number of scalars in the parameter pytree."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


_ALIGN = 16  # pad matmul inner/outer dims of 27 and 30 up to 32: XLA's CPU kernels run them faster


def _matmul(a: jax.Array, b: jax.Array, compute_dtype: str) -> jax.Array:
    """a @ b in compute_dtype (bfloat16 on accelerators), accumulated and returned in float32."""
    if compute_dtype == "float32":
        return _dense(a, b)
    return jnp.matmul(a.astype(compute_dtype), b.astype(compute_dtype), preferred_element_type=jnp.float32)


def _matmul_t(a: jax.Array, bt: jax.Array, compute_dtype: str) -> jax.Array:
    """a @ bt.T, for a weight kept transposed (out, in); see _dense_t."""
    if compute_dtype == "float32":
        return _dense_t(a, bt)
    return _matmul(a, bt.T, compute_dtype)


# The products of backprop, laid out for XLA's CPU matmul kernels. Autodiff of a @ w
# gives the weight gradient as a.T @ g folded into one dot that contracts the batch
# dimension of both operands, and for the output layer g @ w.T with a short inner
# dimension: the layouts those kernels run slowest. Here a.T (or g.T) is written out
# (the barrier keeps XLA from folding the transpose back), and the output weight is
# kept transposed, so each backward product contracts a row-major operand's rows.
# Same values; the bench measured ~8% more steps/s at batch 32. jax.grad still drives
# the backward pass: these only say how a matmul's vector-Jacobian product is computed.
_barrier = jax.lax.optimization_barrier


@jax.custom_vjp
def _dense(a, w):
    return a @ w


_dense.defvjp(lambda a, w: (a @ w, (a, w)), lambda res, g: (g @ res[1].T, _barrier(res[0].T) @ g))


@jax.custom_vjp
def _dense_t(a, wt):
    return a @ wt.T


_dense_t.defvjp(lambda a, wt: (a @ wt.T, (a, wt)), lambda res, g: (g @ res[1], _barrier(g.T) @ res[0]))


def apply(params: Params, X: jax.Array, arch: Arch = LECTURE, model_state: dict | None = None,
          train: bool = False, key: jax.Array | None = None, pad: bool = True) -> tuple[jax.Array, dict]:
    """Logits for contexts X, and the updated model state (batchnorm statistics when training).

    With `pad`, the embedding width and the vocabulary are padded with zeros to a
    multiple of 16 and the logits come back that wide, the padding columns at -1e30 so
    softmax gives them 0. That changes no real logit and no gradient, only the shapes
    XLA sees (bench: ~12% more steps/s at batch 2048). Dropout and batch statistics
    apply only with `train`; dropout draws from `key`.
    """
    V = params["C"].shape[0]
    dt = arch.compute_dtype
    h = params["C"].at[X].get(mode="promise_in_bounds").reshape(X.shape[0], -1)
    pad_in = -h.shape[1] % _ALIGN if pad else 0
    h = jnp.pad(h, ((0, 0), (0, pad_in)))
    new_state = dict(model_state or {})
    for i in range(1, arch.n_layers + 1):
        W = params[f"W{i}"] if i > 1 else jnp.pad(params["W1"], ((0, pad_in), (0, 0)))
        z = _matmul(h, W, dt)
        if f"b{i}" in params:
            z = z + params[f"b{i}"]
        if arch.norm == "layernorm":
            z = (z - z.mean(-1, keepdims=True)) / jnp.sqrt(z.var(-1, keepdims=True) + EPS)
            z = z * params[f"g{i}"] + params[f"s{i}"]
        elif arch.norm == "batchnorm":
            if train:
                mean, var = z.mean(0), z.var(0)
                new_state[f"mean{i}"] = (1 - BN_MOMENTUM) * new_state[f"mean{i}"] + BN_MOMENTUM * mean
                new_state[f"var{i}"] = (1 - BN_MOMENTUM) * new_state[f"var{i}"] + BN_MOMENTUM * var
            else:  # eval: the running statistics, so a prediction does not depend on its batch
                mean, var = model_state[f"mean{i}"], model_state[f"var{i}"]
            z = (z - mean) / jnp.sqrt(var + EPS) * params[f"g{i}"] + params[f"s{i}"]
        h = ACTIVATIONS[arch.activation](z)
        if train and arch.dropout > 0:
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - arch.dropout, h.shape)
            h = jnp.where(keep, h / (1 - arch.dropout), 0.0)
    out = arch.n_layers + 1
    pad_v = -V % _ALIGN if pad else 0
    logits = (_matmul_t(h, jnp.pad(params[f"W{out}"].T, ((0, pad_v), (0, 0))), dt)
              + jnp.pad(params[f"b{out}"], (0, pad_v), constant_values=-1e30))
    return logits, jax.lax.stop_gradient(new_state)


def forward(params: Params, X: jax.Array, arch: Arch = LECTURE, model_state: dict | None = None) -> jax.Array:
    """Logits (N, vocab) in eval mode; for the lecture's model tanh(C[X] @ W1 + b1) @ W2 + b2."""
    return apply(params, X, arch, model_state, pad=False)[0]


def loss_fn(params: Params, X: jax.Array, Y: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """Mean cross-entropy of the lecture's model's logits against the next characters Y."""
    return per_example_loss(params, X, Y, Arch(compute_dtype=compute_dtype)).mean()


def per_example_loss(params: Params, X: jax.Array, Y: jax.Array, arch: Arch = LECTURE,
                     model_state: dict | None = None) -> jax.Array:
    """Cross-entropy of each example (N,), in eval mode."""
    return cross_entropy(apply(params, X, arch, model_state)[0], Y)


def train_loss(params: Params, model_state: dict, X: jax.Array, Y: jax.Array, key: jax.Array,
               arch: Arch = LECTURE) -> tuple[jax.Array, dict]:
    """Mean cross-entropy in train mode (batch statistics, dropout), and the updated model state."""
    logits, new_state = apply(params, X, arch, model_state, train=True, key=key)
    return cross_entropy(logits, Y).mean(), new_state


def cross_entropy(logits: jax.Array, Y: jax.Array) -> jax.Array:
    """Per-example cross-entropy, logsumexp(logits) - logits[Y].

    The label is picked with a one-hot product rather than an indexed gather: the
    same value, but its gradient is elementwise instead of a scatter, which XLA on
    CPU runs markedly faster (bench: batch 2048).
    """
    picked = jnp.sum(logits * jax.nn.one_hot(Y, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - picked


loss = jax.jit(loss_fn)
