"""The batched sampler: right names, right count, same seed same names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_mlp.data import Vocab
from jax_mlp.model import init_params
from jax_mlp.sample import POOL, decode_rows, sample_names, sample_tokens, use_table

VOCAB = Vocab.from_words(["abcdefghijklmnopqrstuvwxyz"])


def test_decode_rows_stops_at_the_first_boundary():
    v = Vocab.from_words(["abc", "zoë"])
    toks = np.array([[1, 2, 0, 3, 0], [4, 4, 4, 4, 4], [0, 0, 0, 0, 0]])
    assert decode_rows(toks, v) == [v.decode([1, 2]), v.decode([4] * 5), ""]
    assert v.decode([v.stoi["z"], v.stoi["o"], v.stoi["ë"]]) == "zoë"


@pytest.mark.parametrize("num", [1, 37, POOL + 5])
def test_pool_sampler_makes_exactly_num_names_each_ended(num):
    params = init_params(jax.random.key(0), 27, 3, 4, 16, "kaiming")
    params["b2"] = params["b2"].at[0].set(3.0)  # '.' has probability ~0.4 at each step
    toks = np.asarray(sample_tokens(params, jax.random.key(1), jnp.float32(1.0), num=num, block_size=3, max_len=12))
    assert toks.shape == (num, 12)
    for row in toks:  # after the first '.', only '.'
        zeros = np.flatnonzero(row == 0)
        if len(zeros):
            assert not row[zeros[0]:].any()
    # Lengths are geometric: most names end early, a few may run to the cap.
    lengths = (toks != 0).sum(1)
    assert lengths.max() <= 12 and (lengths < 12).mean() > 0.5


def test_same_key_same_names_other_key_other_names():
    params = init_params(jax.random.key(0), 27, 3, 10, 50)
    a = sample_names(params, VOCAB, 3, 50, jax.random.key(5))
    b = sample_names(params, VOCAB, 3, 50, jax.random.key(5))
    c = sample_names(params, VOCAB, 3, 50, jax.random.key(6))
    assert a == b and a != c and len(a) == 50
    assert all(set(n) <= set(VOCAB.itos[1:]) for n in a)


def test_sampler_follows_the_model_distribution():
    # A model that always says 'a' then '.' after 'a': every name is "a".
    params = init_params(jax.random.key(0), 27, 1, 2, 4)
    params = {k: jnp.zeros_like(v) for k, v in params.items()}
    b2 = np.full(27, -50.0, np.float32)
    b2[1] = 50.0
    params["b2"] = jnp.asarray(b2)
    params["C"] = params["C"].at[1].set(1.0)  # context 'a' -> h != 0
    params["W1"] = jnp.ones_like(params["W1"])
    W2 = np.zeros((4, 27), np.float32)
    W2[:, 0] = 100.0  # after 'a', '.' wins by far
    params["W2"] = jnp.asarray(W2)
    assert sample_names(params, VOCAB, 1, 30, jax.random.key(0)) == ["a"] * 30


@pytest.mark.parametrize("top_k, temperature, prefix", [(0, 1.0, ()), (5, 0.7, (1, 2))])
def test_table_sampler_draws_the_same_names_as_forwards_per_character(top_k, temperature, prefix):
    params = init_params(jax.random.key(0), 27, 3, 10, 64, "part3")
    params["b2"] = params["b2"].at[0].set(1.5)
    draw = lambda table: np.asarray(sample_tokens(
        params, jax.random.key(3), jnp.float32(temperature), num=2000, block_size=3, max_len=16,
        top_k=top_k, prefix=prefix, table=table))
    looked_up, computed = draw(True), draw(False)
    assert (looked_up != 0).sum() > 2000 * (len(prefix) + 0.5)  # names go on past the prefix
    np.testing.assert_array_equal(looked_up, computed)


def test_table_is_used_only_when_it_is_the_cheaper_way():
    assert use_table(27, 3, 10_000)  # 19,683 contexts < ~80,000 forward rows
    assert not use_table(27, 3, 20)  # 20 names need ~160 rows
    assert not use_table(27, 8, 10**9)  # 27**8 contexts: too many to tabulate
