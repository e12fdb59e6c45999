"""The lecture's MLP (Bengio et al. 2003): parameters as a dict pytree, a pure forward and loss."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]


def init_params(key: jax.Array, vocab_size: int, block_size: int, n_embd: int, n_hidden: int,
                init: str = "lecture") -> Params:
    """Parameters {C, W1, b1, W2, b2}; 'lecture' draws all from N(0,1), 'kaiming' scales as in part 3."""
    fan_in = block_size * n_embd
    shapes = {"C": (vocab_size, n_embd), "W1": (fan_in, n_hidden), "b1": (n_hidden,),
              "W2": (n_hidden, vocab_size), "b2": (vocab_size,)}
    # One draw for all of them, cut into pieces: a single RNG call compiles in a
    # fraction of the time of five (1.2 s -> 0.2 s on the bench machine).
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    pieces = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    params = {k: piece.reshape(shape) for (k, shape), piece in zip(shapes.items(), pieces)}
    if init == "kaiming":
        # Lecture part 3: tanh gain 5/3 over sqrt(fan_in) keeps the hidden layer out of
        # saturation; a small W2 and zero b2 make the first logits nearly uniform.
        params["W1"] = params["W1"] * (5 / 3) / fan_in**0.5
        params["b1"] = params["b1"] * 0.01
        params["W2"] = params["W2"] * 0.01
        params["b2"] = jnp.zeros_like(params["b2"])
    elif init != "lecture":
        raise ValueError(f"unknown init {init!r}")
    return params


def num_params(params: Params) -> int:
    """Total number of scalars in the parameter pytree."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


_ALIGN = 16  # pad matmul inner/outer dims of 27 and 30 up to 32: XLA's CPU kernels run them faster


def _matmul(a: jax.Array, b: jax.Array, compute_dtype: str) -> jax.Array:
    """a @ b in compute_dtype (bfloat16 on accelerators), accumulated and returned in float32."""
    if compute_dtype == "float32":
        return a @ b
    return jnp.matmul(a.astype(compute_dtype), b.astype(compute_dtype), preferred_element_type=jnp.float32)


def _padded_logits(params: Params, X: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """Logits (N, V rounded up to 16); the padding columns are -1e30, so softmax gives them 0.

    The embedding width and the vocabulary are padded with zeros to a multiple of 16.
    That changes no real logit and no gradient, only the shapes XLA sees (bench: ~12%
    more steps/s at batch 2048).
    """
    V = params["C"].shape[0]
    emb = params["C"].at[X].get(mode="promise_in_bounds").reshape(X.shape[0], -1)
    pad_in, pad_v = -emb.shape[1] % _ALIGN, -V % _ALIGN
    emb = jnp.pad(emb, ((0, 0), (0, pad_in)))
    h = jnp.tanh(_matmul(emb, jnp.pad(params["W1"], ((0, pad_in), (0, 0))), compute_dtype) + params["b1"])
    return (_matmul(h, jnp.pad(params["W2"], ((0, 0), (0, pad_v))), compute_dtype)
            + jnp.pad(params["b2"], (0, pad_v), constant_values=-1e30))


def forward(params: Params, X: jax.Array) -> jax.Array:
    """Logits (N, vocab) for contexts X (N, block_size): tanh(C[X] @ W1 + b1) @ W2 + b2."""
    emb = params["C"].at[X].get(mode="promise_in_bounds").reshape(X.shape[0], -1)
    return jnp.tanh(emb @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


def loss_fn(params: Params, X: jax.Array, Y: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """Mean cross-entropy of the logits against the next characters Y (matmuls in compute_dtype)."""
    return per_example_loss(params, X, Y, compute_dtype).mean()


def per_example_loss(params: Params, X: jax.Array, Y: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """Cross-entropy of each example (N,)."""
    return cross_entropy(_padded_logits(params, X, compute_dtype), Y)


def cross_entropy(logits: jax.Array, Y: jax.Array) -> jax.Array:
    """Per-example cross-entropy, logsumexp(logits) - logits[Y].

    The label is picked with a one-hot product rather than an indexed gather: the
    same value, but its gradient is elementwise instead of a scatter, which XLA on
    CPU runs markedly faster (bench: batch 2048).
    """
    picked = jnp.sum(logits * jax.nn.one_hot(Y, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - picked


loss = jax.jit(loss_fn)
