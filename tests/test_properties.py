"""Property tests of the data pipeline, over any words in any alphabet."""

from hypothesis import given, settings
from hypothesis import strategies as st

from jax_mlp.data import BOUNDARY, Vocab, build_examples, split_words

# Any characters but the boundary token and line breaks/whitespace at the ends; astral ones included.
chars = st.characters(blacklist_characters=BOUNDARY, blacklist_categories=("Cs", "Zl", "Zp", "Cc", "Zs"))
words_st = st.lists(st.text(chars, min_size=1, max_size=12), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(words=words_st, block_size=st.integers(1, 6))
def test_examples_count_and_contexts(words, block_size):
    vocab = Vocab.from_words(words)
    X, Y = build_examples(words, vocab, block_size)
    assert len(Y) == sum(len(w) + 1 for w in words)
    i = 0
    for w in words:
        padded = BOUNDARY * block_size + w
        for j, target in enumerate(w + BOUNDARY):
            # every context is a window of '.'*block_size + word ending just before its target
            assert vocab.decode(X[i].tolist()) == padded[j:j + block_size]
            assert vocab.itos[Y[i]] == target
            i += 1


@settings(max_examples=200, deadline=None)
@given(words=words_st, seed=st.integers(0, 2**32 - 1))
def test_split_is_a_partition(words, seed):
    train, dev, test = split_words(words, seed)
    assert sorted(train + dev + test) == sorted(words)
    n = len(words)
    assert (len(train), len(dev), len(test)) == (int(0.8 * n), int(0.9 * n) - int(0.8 * n), n - int(0.9 * n))


@settings(max_examples=200, deadline=None)
@given(words=words_st)
def test_encode_decode_round_trip(words):
    vocab = Vocab.from_words(words)
    assert vocab.itos[0] == BOUNDARY and list(vocab.itos[1:]) == sorted(set("".join(words)))
    for w in words:
        ids = vocab.encode(w)
        assert 0 not in ids and vocab.decode(ids) == w
