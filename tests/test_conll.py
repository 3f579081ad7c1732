"""Tagged-data readers, tag schemes and conlleval's entity spans."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from seqtrain.data.conll import (
    SpanCounts, convert, detect_scheme, prf, read_file, read_tagged, spans, tokenize_sentence,
)
from seqtrain.errors import SeqtrainError

IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- O O

In IN I-PP O
Paris NNP I-NP I-LOC
Lyon NNP I-NP B-LOC
"""

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t0:root\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_conll_columns_skip_docstart_and_read_the_last_column(tmp_path):
    sentences = read_file(write(tmp_path / "eng.train", IOB1))
    assert [s.tokens for s in sentences] == [
        ["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"], ["In", "Paris", "Lyon"]
    ]
    assert sentences[0].tags == ["I-ORG", "O", "I-MISC", "O", "O"]
    chunks = read_file(write(tmp_path / "eng.txt", IOB1), tag_col="3")
    assert chunks[0].tags[:2] == ["I-NP", "I-VP"]
    assert detect_scheme(sentences) == "iob1"


def test_gzipped_tab_separated_file(tmp_path):
    path = tmp_path / "train.tsv.gz"
    with gzip.open(path, "wt") as out:
        out.write("New York\tB-LOC\nis\tO\n\nhere\tO\n")
    sentences = read_file(path)
    assert sentences[0].tokens == ["New York", "is"] and sentences[1].tags == ["O"]


def test_conllu_keeps_syntactic_words_and_skips_ranges_and_empty_nodes(tmp_path):
    sentences = read_file(write(tmp_path / "x.conllu", CONLLU))
    assert sentences[0].tokens == ["I", "do", "n't", "know", "."]
    assert sentences[0].tags == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert read_file(tmp_path / "x.conllu", tag_col="xpos")[0].tags == ["PRP", "VBP", "RB", "VB", "."]
    assert read_file(tmp_path / "x.conllu", tag_col="deprel")[0].tags[0] == "nsubj"
    assert detect_scheme(sentences) == "plain"


def test_json_lines(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"tokens": ["Jim", "ran"], "tags": ["B-PER", "O"]}\n\n{"tokens": ["x"], "tags": ["O"]}\n')
    sentences = read_file(path)
    assert len(sentences) == 2 and sentences[0].tags == ["B-PER", "O"]
    assert detect_scheme(sentences) == "iob2"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.txt", "EU NNP I-ORG\nrejects VBZ\n", "a.txt:2: 2 columns where the file's first line has 3"),
        ("a.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n', "a.jsonl:2: 2 tokens but 1 tags"),
        ("a.conllu", "1\tI\tI\tPRON\n", "a.conllu:1: 4 tab-separated columns"),
        ("a.jsonl", "{nope\n", "a.jsonl:1: not JSON"),
        ("a.txt", "word\n", "a.txt:1: one column only"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(SeqtrainError, match=message.replace("(", r"\(")):
        read_file(write(tmp_path / name, text))


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"ok O\n\ncaf\xe9 O\n")
    with pytest.raises(SeqtrainError, match=r"a.txt:3: not valid utf-8"):
        read_file(path)
    assert read_file(path, encoding="latin-1")[1].tokens == ["caf\xe9"]


def test_folder_splits_by_conventional_names(tmp_path):
    for name in ("eng.train", "eng.testa", "eng.testb"):
        write(tmp_path / name, IOB1)
    tagged = read_tagged(tmp_path)
    assert sorted(tagged.splits) == ["test", "train", "val"]
    assert tagged.files["val"].name == "eng.testa" and tagged.files["test"].name == "eng.testb"


def test_iob1_edge_cases_decode_as_conlleval():
    # I-X after O or after another type opens an entity; B-X separates two adjacent entities of one type
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG", "O", "B-MISC"]
    assert spans(tags) == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4), ("ORG", 5, 5), ("ORG", 6, 7), ("MISC", 9, 9)]


def random_iob1(rng: random.Random, length: int) -> list[str]:
    """Well-formed IOB1: entities of random types, B- only where an entity follows one of the same type."""
    tags, previous = [], None
    while len(tags) < length:
        if rng.random() < 0.4:
            tags.append("O")
            previous = None
            continue
        type_ = rng.choice(["PER", "LOC", "ORG"])
        size = rng.randint(1, 3)
        tags += [("B-" if previous == type_ else "I-") + type_] + [f"I-{type_}"] * (size - 1)
        previous = type_
    return tags[:length]


@pytest.mark.parametrize("scheme", ["iob2", "bioes", "iob1"])
def test_scheme_conversions_round_trip(scheme):
    rng = random.Random(0)
    for _ in range(200):
        original = random_iob1(rng, rng.randint(1, 12))
        there = convert(original, scheme)
        assert spans(there) == spans(original)
        assert convert(there, "iob1") == original
    assert convert(["I-PER", "I-PER", "B-PER"], "bioes") == ["B-PER", "E-PER", "S-PER"]
    assert convert(["I-PER", "I-PER", "B-PER"], "iob2") == ["B-PER", "I-PER", "B-PER"]
    assert detect_scheme_of(["S-PER", "O"]) == "bioes"


def detect_scheme_of(tags):
    from seqtrain.data.conll import Sentence

    return detect_scheme([Sentence(["w"] * len(tags), tags)])


def random_tags(rng: random.Random, length: int) -> list[str]:
    """Any sequence, ill-formed ones included (what a softmax tagger may output)."""
    return [rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-PER", "S-LOC"]) for _ in range(length)]


def test_span_scores_equal_seqeval_on_ill_formed_sequences():
    rng = random.Random(1)
    truth = [random_iob1(rng, rng.randint(1, 15)) for _ in range(300)]
    guess = [random_tags(rng, len(t)) if i % 2 else random_iob1(rng, len(t)) for i, t in enumerate(truth)]
    counts = SpanCounts()
    for t, g in zip(truth, guess):
        counts.add(t, g)
    ours = prf(sum(counts.correct.values()), sum(counts.predicted.values()), sum(counts.gold.values()))
    assert ours["f1"] == pytest.approx(f1_score(truth, guess))
    assert ours["precision"] == pytest.approx(precision_score(truth, guess))
    assert ours["recall"] == pytest.approx(recall_score(truth, guess))


def test_conlleval_figures_on_a_fixture():
    # conlleval on these: 4 phrases in the truth, 4 guessed, 1 correct (PER; LOC 3-4 is not LOC 3 + LOC 4)
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["I-ORG", "O"]]
    guess = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC"], ["I-MISC", "I-ORG"]]
    counts = SpanCounts()
    for g, p in zip(gold, guess):
        counts.add(g, p)
    assert (sum(counts.gold.values()), sum(counts.predicted.values()), sum(counts.correct.values())) == (4, 4, 1)
    assert counts.correct == {"PER": 1}


def test_tokenizer_keeps_abbreviations_whole():
    assert tokenize_sentence("Jim bought 300 shares of Acme Corp. in 2006.") == [
        "Jim", "bought", "300", "shares", "of", "Acme", "Corp.", "in", "2006", "."
    ]
    assert tokenize_sentence("The U.S. didn't.") == ["The", "U.S.", "did", "n't", "."]


def test_conll2003_originals_read_as_the_manifest_counts():
    from conftest import shared_data

    tagged = read_tagged(shared_data("conll2003"))
    sizes = {split: (len(s), sum(len(x.tokens) for x in s)) for split, s in tagged.splits.items()}
    assert sizes == {"train": (14041, 203621), "val": (3250, 51362), "test": (3453, 46435)}
    assert detect_scheme(tagged.splits["train"]) == "iob1"
    entities = [e for s in tagged.splits["train"] for e in spans(s.tags)]
    assert len(entities) == 6600 + 7140 + 6321 + 3438
