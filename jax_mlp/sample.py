"""Sample names from a trained model: all names in parallel on the device.

    python -m jax_mlp.sample --run runs/lecture -n 20 --seed 0 [--temperature 1.0] [--top-k K]
        [--prefix ja] [--unique]
"""

from __future__ import annotations

import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jax_mlp import checkpoint
from jax_mlp.data import Vocab
from jax_mlp.errors import ArgumentParser, UserError, cli_entry
from jax_mlp.model import LECTURE, Arch, forward
from jax_mlp.devices import use_compile_cache

POOL = 1024  # names in flight at once (the bench: 512-4096 all alike on 2 cores)
# A model sees only block_size characters, so it has V**block_size possible contexts
# (27**3 = 19,683 for the lecture's). When that is fewer than the forward rows the
# names need (about CHARS_PER_NAME each), one batched forward over every context
# gives a table of next-character distributions, and sampling is a lookup per
# character. Same model, same distributions: only the matmul batch differs.
TABLE_MAX_CONTEXTS = 1 << 16
CHARS_PER_NAME = 8


def use_table(vocab_size: int, block_size: int, num: int) -> bool:
    """Whether a table of every context's distribution is cheaper than forwards per character."""
    contexts = vocab_size**block_size
    return contexts <= TABLE_MAX_CONTEXTS and contexts <= num * CHARS_PER_NAME


@partial(jax.jit, static_argnames=("num", "block_size", "max_len", "top_k", "prefix", "arch", "table"))
def sample_tokens(params, key, temperature, *, num: int, block_size: int, max_len: int, top_k: int = 0,
                  prefix: tuple[int, ...] = (), arch: Arch = LECTURE, model_state: dict | None = None,
                  table: bool = False) -> jax.Array:
    """Token ids (num, max_len): row r is name r, then 0s from its closing '.' on.

    top_k > 0 samples only among the k likeliest characters; every name starts with
    the ids in `prefix` (already written in its row) and continues from there.

    A pool of min(num, POOL) names is generated in parallel, one character per step
    for all of them; a slot whose name has ended starts the next name at once. Names
    end at different lengths, so a refilled pool wastes far less work than running
    every name until the longest one ends.

    With `table`, the cumulative distributions of all V**block_size contexts are
    computed first, in one batched forward, and each step looks its rows up.
    """
    V = params["C"].shape[0]
    pool = min(num, POOL)
    first_ctx = jnp.asarray(((0,) * block_size + prefix)[-block_size:], jnp.int32)
    first_pos = len(prefix)

    def cond(carry):
        return carry["finished"] < num

    def cdf(ctx):
        logits = forward(params, ctx, arch, model_state) / temperature
        if top_k:
            kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        return jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)

    if table:
        every_context = jnp.indices((V,) * block_size, jnp.int32).reshape(block_size, -1).T
        cdfs = cdf(every_context)  # row sum_k ctx[k] * V**(block_size-1-k)
        place = V ** jnp.arange(block_size - 1, -1, -1, dtype=jnp.int32)
        lookup = lambda ctx: cdfs[jnp.sum(ctx * place, axis=1)]
    else:
        lookup = cdf

    def body(c):
        # Inverse-CDF sampling, as torch.multinomial: one uniform per name, not one per symbol.
        u = jax.random.uniform(jax.random.fold_in(key, c["i"]), (pool, 1))
        ix = jnp.minimum(jnp.sum(lookup(c["ctx"]) < u, axis=-1), V - 1).astype(jnp.int32)
        active = c["name"] < num
        out = c["out"].at[c["name"], c["pos"]].set(ix, mode="drop")  # idle slots point past the end
        ended = active & ((ix == 0) | (c["pos"] + 1 >= max_len))
        new_name = c["next"] + jnp.cumsum(ended) - 1
        return {
            "i": c["i"] + 1,
            "out": out,
            "name": jnp.where(ended, jnp.minimum(new_name, num), c["name"]),
            "pos": jnp.where(ended, first_pos, c["pos"] + 1),
            "ctx": jnp.where(ended[:, None], first_ctx, jnp.concatenate([c["ctx"][:, 1:], ix[:, None]], axis=1)),
            "next": c["next"] + jnp.sum(ended),
            "finished": c["finished"] + jnp.sum(ended),
        }

    start = {
        "i": jnp.int32(0),
        "out": jnp.zeros((num, max_len), jnp.int32).at[:, :first_pos].set(jnp.asarray(prefix, jnp.int32)),
        "name": jnp.arange(pool, dtype=jnp.int32),
        "pos": jnp.full((pool,), first_pos, jnp.int32),
        "ctx": jnp.broadcast_to(first_ctx, (pool, block_size)),
        "next": jnp.int32(pool),
        "finished": jnp.int32(0),
    }
    return jax.lax.while_loop(cond, body, start)["out"]


def decode_rows(tokens: np.ndarray, vocab: Vocab) -> list[str]:
    """Each row's characters up to its first '.' (a row with none was cut at max_len)."""
    tokens = np.asarray(tokens)
    if tokens.size == 0:
        return [""] * len(tokens)
    # Zero everything from each row's first '.' on, map ids to characters with '.' as
    # NUL, and read each row as one fixed-width string: numpy drops the trailing NULs.
    after_end = np.cumsum(tokens == 0, axis=1) > 0
    chars = np.array(["\0", *vocab.itos[1:]], dtype="<U1")[np.where(after_end, 0, tokens)]
    return np.ascontiguousarray(chars).view(f"<U{tokens.shape[1]}").ravel().tolist()


def sample_names(params, vocab: Vocab, block_size: int, num: int, key: jax.Array, max_len: int = 32,
                 temperature: float = 1.0, top_k: int = 0, prefix: str = "", unique: bool = False,
                 max_rounds: int = 20, arch: Arch = LECTURE, model_state: dict | None = None) -> list[str]:
    """`num` names sampled from the model; the same key gives the same names.

    With `unique`, draws more rounds until `num` different names are found (or
    max_rounds pass: then fewer are returned).
    """
    if num == 0:
        return []
    ids = tuple(vocab.encode(prefix))

    def draw(k, n):
        tokens = sample_tokens(params, k, jnp.float32(temperature), num=n, block_size=block_size,
                               max_len=max(max_len, len(ids) + 2), top_k=min(top_k, len(vocab)), prefix=ids,
                               arch=arch, model_state=model_state, table=use_table(len(vocab), block_size, n))
        return decode_rows(jax.device_get(tokens), vocab)

    if not unique:
        return draw(key, num)
    names: dict[str, None] = {}
    for r in range(max_rounds):
        for name in draw(jax.random.fold_in(key, r), max(num, 64)):
            names.setdefault(name, None)
        if len(names) >= num:
            break
    return list(names)[:num]


@cli_entry
def main(argv=None):
    use_compile_cache()
    parser = ArgumentParser(prog="python -m jax_mlp.sample", description="Print names sampled from a run.")
    parser.add_argument("--run", required=True, help="run directory (train.out_dir) or checkpoint file")
    parser.add_argument("-n", "--num", type=int, default=20, help="names to print (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same names (default %(default)s)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divide the logits by T: < 1 safer, > 1 wilder (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest characters only")
    parser.add_argument("--prefix", default="", help="every name starts with this text")
    parser.add_argument("--unique", action="store_true", help="print n different names")
    args = parser.parse_args(argv)
    if args.num < 1:
        raise UserError(f"-n must be >= 1, got {args.num}")
    if not args.temperature > 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    ckpt = checkpoint.load(args.run)
    unknown = sorted(set(args.prefix) - set(ckpt.vocab.itos[1:]))
    if unknown:
        raise UserError(f"--prefix {args.prefix!r} has characters the model never saw: {''.join(unknown)!r} "
                        f"(its vocabulary: {''.join(ckpt.vocab.itos[1:])})")
    params = {k: jnp.asarray(v) for k, v in ckpt.params.items()}
    names = sample_names(params, ckpt.vocab, ckpt.config.data.block_size, args.num, jax.random.key(args.seed),
                         ckpt.max_len, args.temperature, args.top_k or 0, args.prefix, args.unique,
                         arch=Arch.of(ckpt.config.model),
                         model_state={k: jnp.asarray(v) for k, v in ckpt.model_state.items()})
    print("\n".join(names), flush=True)
    if args.unique and len(names) < args.num:
        print(f"note: only {len(names)} different names found", file=sys.stderr)
    train_words = ckpt.extra.get("train_words")
    if train_words is not None:
        seen = set(train_words)
        new = sum(n not in seen for n in names)
        print(f"{new} of {len(names)} names are new (not among the {len(seen):,} distinct training words)", file=sys.stderr)


if __name__ == "__main__":
    main()
