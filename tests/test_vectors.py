import gzip
import re
import zipfile

import pytest
import torch

from seqtrain.data import vectors
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


def _chunked_file(tmp_path, kind: str, lines: list[str]) -> "Path":
    text = "".join(lines).encode("utf-8")
    if kind == "gz":
        path = tmp_path / "v.txt.gz"
        path.write_bytes(gzip.compress(text))
    elif kind == "zip":
        path = tmp_path / "v.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("v.txt", text)
    else:
        path = tmp_path / "v.txt"
        path.write_bytes(text)
    return path


def _varied_rows(count: int, dim: int) -> list[str]:
    """Rows in the spellings real files use: several precisions, exponents, CRLF, blank lines, a word2vec header."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(count, dim, generator=generator).tolist()
    spellings = ("{:.6f}", "{:.5g}", "{:.3e}", "{}")
    lines = [f"{count} {dim}\n"]
    for row, numbers in enumerate(values):
        spelled = " ".join(spellings[(row + i) % 4].format(v) for i, v in enumerate(numbers))
        lines.append(f"w{row}é {spelled}" + ("\r\n" if row % 7 == 0 else "\n") + ("\n" if row % 50 == 0 else ""))
    lines[-1] = lines[-1].rstrip("\n")  # no final line break
    return lines


@pytest.mark.parametrize("kind", ["txt", "gz", "zip"])
def test_worker_processes_parse_exactly_what_one_process_does(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(vectors, "CHUNK_BYTES", 997)  # dozens of chunks, split mid-line
    path = _chunked_file(tmp_path, kind, _varied_rows(400, 7))
    alone = vectors._parse(path, None, workers=1)
    pooled = vectors._parse(path, None, workers=2)
    assert alone.words == pooled.words == [f"w{i}é" for i in range(400)]
    assert torch.equal(alone.vectors, pooled.vectors) and alone.vectors.shape == (400, 7)
    expected = torch.tensor([[float(v) for v in line.split()[1:]] for line in _varied_rows(400, 7)[1:] if line.strip()])
    assert torch.equal(pooled.vectors, expected.float())


@pytest.mark.parametrize("kind", ["txt", "gz"])
@pytest.mark.parametrize("bad, message", [("w x 1 2", "line 302 is not 'word v1 ... vd'"), ("w 1 2", "line 302 has 2 values, expected 3")])
def test_a_bad_line_far_into_the_file_is_named_by_every_parser(tmp_path, monkeypatch, kind, bad, message):
    monkeypatch.setattr(vectors, "CHUNK_BYTES", 256)
    lines = [f"w{i} 1 2 3\n" for i in range(300)]
    lines.insert(150, "\n")  # blank lines count as lines
    lines.insert(301, bad + "\n")
    path = _chunked_file(tmp_path, kind, lines)
    for workers in (1, 2):
        with pytest.raises(SeqtrainError, match=f"^{re.escape(str(path))}: {message}"):
            vectors._parse(path, None, workers=workers)


def test_missing_file_is_a_clear_error():
    with pytest.raises(SeqtrainError, match="not found"):
        resolve_vectors("/no/such/vectors.txt")


def test_embedding_matrix_coverage_and_case_fallback(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(ROWS)
    vocab = Vocab(["<pad>", "<unk>", "the", "dog", "zebra", "cat"])
    matrix, found = embedding_matrix(load_vectors(path), vocab)
    assert found.tolist() == [False, False, True, True, False, True]
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


# ------------------------------------------------------------ formats and exploring
from seqtrain.data.vectors import WordVectors, save_vectors, vector_dim  # noqa: E402
from seqtrain.similarity import Explorer, similarity_score, spearman  # noqa: E402

HAND = WordVectors(
    ["king", "queen", "man", "woman", "apple", "pear", "café"],
    torch.tensor([
        [1.0, 1.0, 0.0], [1.0, -1.0, 0.1], [0.2, 1.0, 0.0], [0.2, -1.0, 0.1], [0.0, 0.0, 1.0], [0.1, 0.0, 1.0],
        [-1.0, 0.0, 0.0],
    ]),
)


@pytest.mark.parametrize("binary", [False, True])
def test_text_and_binary_formats_round_trip(tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    save_vectors(HAND, path, binary=binary)
    loaded = load_vectors(path)
    assert loaded.words == HAND.words
    torch.testing.assert_close(loaded.vectors, HAND.vectors, atol=1e-6, rtol=1e-5)
    assert vector_dim(str(path)) == 3
    if not binary:
        assert path.read_text(encoding="utf-8").splitlines()[0] == "7 3"


@pytest.mark.parametrize("binary", [False, True])
def test_files_agree_with_gensim(tmp_path, binary):
    gensim = pytest.importorskip("gensim.models")
    path = tmp_path / "v.bin"
    save_vectors(HAND, path, binary=binary)
    theirs = gensim.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert list(theirs.index_to_key) == HAND.words
    torch.testing.assert_close(torch.from_numpy(theirs.vectors), HAND.vectors, atol=1e-6, rtol=1e-5)
    ours = tmp_path / "theirs.bin"
    theirs.save_word2vec_format(str(ours), binary=binary)
    torch.testing.assert_close(load_vectors(ours).vectors, HAND.vectors, atol=1e-6, rtol=1e-5)


def test_truncated_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "v.bin"
    save_vectors(HAND, path, binary=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(SeqtrainError, match="cut short"):
        load_vectors(path)


def test_similar_and_analogy_on_hand_made_vectors():
    explorer = Explorer(HAND)
    assert explorer.similar("apple", 1)[0][0] == "pear"
    assert explorer.similar("King", 1)[0][0] in HAND.words  # case-insensitive fallback
    assert explorer.analogy("man", "king", "woman")[0][0] == "queen"
    answers = [w for w, _ in explorer.analogy("man", "king", "woman", 6)]
    assert not {"man", "king", "woman"} & set(answers)  # the inputs are left out, as gensim does
    score = explorer.similar("apple", 2)[0][1]
    assert score == pytest.approx(float(torch.nn.functional.cosine_similarity(HAND.vectors[4], HAND.vectors[5], 0)))


def test_unknown_word_suggests_close_spellings():
    with pytest.raises(SeqtrainError, match="did you mean queen"):
        Explorer(HAND).similar("quen")
    with pytest.raises(SeqtrainError, match="'zzzz' is not in the vectors") as info:
        Explorer(HAND).similar("zzzz")
    assert "did you mean" not in str(info.value)


def test_similarity_score_is_spearman_over_covered_pairs():
    pairs = [("king", "queen", 5.0), ("apple", "pear", 9.0), ("queen", "café", 1.0), ("nope", "king", 3.0)]
    score = similarity_score(HAND, pairs)
    assert score.covered == 3 and score.spearman == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)  # scipy's value with ties


def test_glove_subset_king_queen():
    from seqtrain.similarity import explore

    for name in ("glove.6B.50d.head2446.txt", "glove.6B.100d.head2604.txt"):
        explorer = explore(str(shared_data(f"glove-subset/{name}")))
        assert "queen" in [w for w, _ in explorer.similar("king", 10)]
        assert explorer.analogy("man", "king", "woman")[0][0] == "queen"


def test_cli_similar_analogy_and_errors(tmp_path):
    from typer.testing import CliRunner

    from seqtrain_cli.main import app

    path = tmp_path / "v.bin"
    save_vectors(HAND, path, binary=True)
    runner = CliRunner()
    result = runner.invoke(app, ["similar", str(path), "apple", "--top-k", "2"])
    assert result.exit_code == 0 and result.output.splitlines()[0].startswith("pear\t")
    result = runner.invoke(app, ["analogy", str(path), "man", "king", "woman"])
    assert result.exit_code == 0 and result.output.startswith("queen\t")
    result = runner.invoke(app, ["similar", str(path), "quen"])
    assert result.exit_code == 2 and "did you mean queen" in result.output
    result = runner.invoke(app, ["similar", str(tmp_path / "none.txt"), "king"])
    assert result.exit_code == 2 and "not found" in result.output
