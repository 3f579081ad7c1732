import gzip
import zipfile

import pytest
import torch

from seqtrain.data.text import Vocab
from seqtrain.data.vectors import embedding_matrix, load_vectors, resolve_vectors
from seqtrain.errors import SeqtrainError

from conftest import shared_data

ROWS = "the 0.1 0.2 0.3\ncat 1.0 -1.0 0.5\nDog 0.0 0.0 2.0\n"


@pytest.mark.parametrize("kind", ["txt", "gz", "zip", "word2vec"])
def test_parses_every_container(tmp_path, kind):
    path = tmp_path / f"v.{kind}"
    if kind == "gz":
        path = tmp_path / "v.txt.gz"
        path.write_bytes(gzip.compress(ROWS.encode()))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("v.txt", ROWS)
    elif kind == "word2vec":
        path.write_text("3 3\n" + ROWS)
    else:
        path.write_text(ROWS)
    vectors = load_vectors(path)
    assert vectors.words == ["the", "cat", "Dog"]
    torch.testing.assert_close(vectors.vectors[1], torch.tensor([1.0, -1.0, 0.5]))


def test_undecodable_bytes_do_not_fail_the_load(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"ok 1 2\n\xff\xfebad 3 4\nlast 5 6")  # no final newline, like the real 50d file
    vectors = load_vectors(path)
    assert len(vectors.words) == 3 and vectors.words[2] == "last"


def test_ragged_rows_are_a_clear_error(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("a 1 2\nb 1 2 3\n")
    with pytest.raises(SeqtrainError, match="line 2"):
        load_vectors(path)


def test_missing_file_is_a_clear_error():
    with pytest.raises(SeqtrainError, match="not found"):
        resolve_vectors("/no/such/vectors.txt")


def test_embedding_matrix_coverage_and_case_fallback(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(ROWS)
    vocab = Vocab(["<pad>", "<unk>", "the", "dog", "zebra", "cat"])
    matrix, coverage = embedding_matrix(load_vectors(path), vocab)
    assert coverage == pytest.approx(3 / 4)
    torch.testing.assert_close(matrix[3], torch.tensor([0.0, 0.0, 2.0]))  # "dog" found as "Dog"
    assert matrix[0].abs().sum() == 0


def test_real_glove_subset_loads_and_second_load_is_cached():
    path = shared_data("glove-subset/glove.6B.50d.head2446.txt")
    vectors = load_vectors(path)
    assert vectors.vectors.shape == (2446, 50)
    assert vectors.words[0] == "the"
    again = load_vectors(path)
    assert torch.equal(again.vectors, vectors.vectors) and again.words == vectors.words


def test_named_glove_downloads_through_the_mirror(tmp_path):
    subset = shared_data("glove-subset/glove.6B.50d.head2446.txt")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "glove.6B.zip", "w") as zf:
        zf.write(subset, "glove.6B.50d.txt")
        zf.writestr("glove.6B.100d.txt", "the " + " ".join(["0.5"] * 100) + "\n")
    vectors = resolve_vectors("glove.6B.50d", mirror=str(mirror))
    assert vectors.vectors.shape == (2446, 50)
    assert resolve_vectors("glove.6B.100d", mirror=str(mirror)).dim == 100
