"""Sample names from a trained model: all names in parallel on the device.

    python -m jax_mlp.sample --run runs/lecture -n 20 --seed 0 [--temperature 1.0]
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jax_mlp import checkpoint
from jax_mlp.data import Vocab
from jax_mlp.model import forward
from jax_mlp.errors import ArgumentParser, UserError, cli_entry


@partial(jax.jit, static_argnames=("num", "block_size", "max_len"))
def sample_tokens(params, key, temperature, *, num: int, block_size: int, max_len: int) -> jax.Array:
    """Token ids (num, max_len): each row is a name followed by 0s once it has emitted '.'."""
    V = params["C"].shape[0]

    def cond(carry):
        i, _, _, done = carry
        return (i < max_len) & ~jnp.all(done)

    def body(carry):
        i, ctx, out, done = carry
        probs = jax.nn.softmax(forward(params, ctx) / temperature, axis=-1)
        # Inverse-CDF sampling, as torch.multinomial: one uniform per name, not one per symbol.
        u = jax.random.uniform(jax.random.fold_in(key, i), (num, 1))
        ix = jnp.minimum(jnp.sum(jnp.cumsum(probs, axis=-1) < u, axis=-1), V - 1).astype(jnp.int32)
        ix = jnp.where(done, 0, ix)
        out = out.at[:, i].set(ix)
        ctx = jnp.concatenate([ctx[:, 1:], ix[:, None]], axis=1)
        return i + 1, ctx, out, done | (ix == 0)

    ctx = jnp.zeros((num, block_size), jnp.int32)
    out = jnp.zeros((num, max_len), jnp.int32)
    done = jnp.zeros((num,), bool)
    return jax.lax.while_loop(cond, body, (0, ctx, out, done))[2]


def decode_rows(tokens: np.ndarray, vocab: Vocab) -> list[str]:
    """Each row's characters up to its first '.' (a row with none was cut at max_len)."""
    names = []
    for row in np.asarray(tokens).tolist():
        end = row.index(0) if 0 in row else len(row)
        names.append(vocab.decode(row[:end]))
    return names


def sample_names(params, vocab: Vocab, block_size: int, num: int, key: jax.Array,
                 max_len: int = 32, temperature: float = 1.0) -> list[str]:
    """`num` names sampled from the model; the same key gives the same names."""
    if num == 0:
        return []
    tokens = sample_tokens(params, key, jnp.float32(temperature), num=num, block_size=block_size, max_len=max_len)
    return decode_rows(jax.device_get(tokens), vocab)


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="python -m jax_mlp.sample", description="Print names sampled from a run.")
    parser.add_argument("--run", required=True, help="run directory (train.out_dir) or checkpoint file")
    parser.add_argument("-n", "--num", type=int, default=20, help="names to print (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same names (default %(default)s)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divide the logits by T: < 1 safer, > 1 wilder (default %(default)s)")
    args = parser.parse_args(argv)
    if args.num < 1:
        raise UserError(f"-n must be >= 1, got {args.num}")
    if not args.temperature > 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    ckpt = checkpoint.load(args.run)
    params = {k: jnp.asarray(v) for k, v in ckpt.params.items()}
    names = sample_names(params, ckpt.vocab, ckpt.config.data.block_size, args.num,
                         jax.random.key(args.seed), ckpt.max_len, args.temperature)
    print("\n".join(names))


if __name__ == "__main__":
    main()
