"""Reuters-21578: the SGML parser and the subsets, on a fixture cut from the shared archive and on the whole."""

import re
import tarfile

import pytest

from conftest import make, shared_data
from seqtrain.data.reuters import FILES, parse_sgml, read_corpus, select
from seqtrain.tasks import reuters

ARCHIVE = "reuters21578/reuters21578.tar.gz"


def sgml_files(archive) -> dict[str, str]:
    with tarfile.open(archive) as tar:
        return {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read().decode("latin-1")
                for m in tar.getmembers() if m.name.endswith(".sgm")}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The 22 files, each cut to its first 40 records (880 of the 21,578), with their real markup."""
    folder = tmp_path_factory.mktemp("reuters")
    for name, text in sgml_files(shared_data(ARCHIVE)).items():
        records = re.findall(r"<REUTERS\b.*?</REUTERS>", text, re.S)[:40]
        (folder / name).write_text('<!DOCTYPE lewis SYSTEM "lewis.dtd">\n' + "\n".join(records) + "\n", encoding="latin-1")
    return folder


def test_parser_reads_attributes_topics_title_and_body():
    text = ('<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="7">\n'
            "<TOPICS><D>grain</D><D>wheat</D></TOPICS><TEXT>&#2;\n<TITLE>WHEAT &lt;UP&gt;</TITLE>\n"
            "<BODY>Prices rose &amp; fell.\n Reuter\n&#3;</BODY></TEXT></REUTERS>\n"
            '<REUTERS TOPICS="NO" LEWISSPLIT="NOT-USED" NEWID="8"><TOPICS></TOPICS><TEXT TYPE="BRIEF">'
            "<TITLE>SHORT</TITLE></TEXT></REUTERS>")
    first, second = parse_sgml(text)
    assert (first.newid, first.topics, first.has_topics, first.lewis_split) == (7, ["grain", "wheat"], True, "TEST")
    assert first.text == "WHEAT <UP>\nPrices rose & fell.\n Reuter"
    assert (second.topics, second.has_topics, second.text) == ([], False, "SHORT")


def test_subsets_on_the_small_fixture(small_corpus):
    articles = read_corpus(small_corpus)
    assert len(articles) == 22 * 40
    for subset, size in (("r8", 8), ("r52", 52)):
        train, test = select(articles, subset)
        for part, split in ((train, "TRAIN"), (test, "TEST")):
            assert part and all(a.has_topics and a.lewis_split == split and len(a.topics) == 1 for a in part)
        topics = {a.topics[0] for a in train}
        assert topics == {a.topics[0] for a in test} and len(topics) <= size
    r8_topics, r52_topics = ({a.topics[0] for a in select(articles, s)[0]} for s in ("r8", "r52"))
    assert r8_topics <= r52_topics
    tagged, none = select(articles, "reuters46")
    assert none is None and all(a.topics for a in tagged)


def test_whole_corpus_gives_the_published_subset_sizes(tmp_path):
    """R8 5,485/2,189 and R52 6,532/2,568 (Cardoso-Cachopo 2007); Keras' 46-topic set 11,228."""
    for name, text in sgml_files(shared_data(ARCHIVE)).items():
        (tmp_path / name).write_text(text, encoding="latin-1")
    articles = read_corpus(tmp_path)
    assert len(articles) == 21578
    sizes = {subset: tuple(len(part) for part in select(articles, subset) if part is not None) for subset in ("r8", "r52", "reuters46")}
    assert sizes == {"r8": (5485, 2189), "r52": (6532, 2568), "reuters46": (11228,)}
    assert len({a.topics[0] for a in select(articles, "reuters46")[0]}) == 46
    assert {a.topics[0] for a in select(articles, "r8")[0]} == {
        "acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"}


def test_task_reads_the_archive_and_splits_46_topics_80_20(small_corpus, tmp_path):
    with tarfile.open(tmp_path / "reuters21578.tar.gz", "w:gz") as tar:
        for name in FILES:
            tar.add(small_corpus / name, arcname=name)
    task = make("reuters", data=str(tmp_path), subset="reuters46", val_split=0.1)
    data = task.prepare()
    n_train, n_val, n_test = (len(loader.sequences) for loader in (data.train, data.val, data.test))
    total = n_train + n_val + n_test
    assert n_test == round(total * 0.2) and n_val == round((total - n_test) * 0.1)
    r8 = make("reuters", data=str(small_corpus), subset="r8").prepare()
    assert len(r8.test.sequences) == len(select(read_corpus(small_corpus), "r8")[1])


def test_download_from_a_mirror_is_verified(tmp_path, monkeypatch):
    mirror = shared_data(ARCHIVE).parent
    task = make("reuters", mirror=str(mirror))
    folder = reuters.locate(task.config, quiet=True)
    assert all((folder / name).is_file() for name in FILES)
    monkeypatch.setattr(reuters, "SHA256", "0" * 64)
    from seqtrain.errors import SeqtrainError

    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        reuters.locate(make("reuters", mirror=str(mirror), cache_dir=str(tmp_path / "other")).config, quiet=True)


def test_r8_pretrains_on_the_records_outside_the_test_split_and_reuters46_skips(small_corpus):
    from seqtrain.data.download import cache_dir

    task = make("reuters", data=str(small_corpus), subset="r8", embed_dim=8, hidden=8)
    task.prepare()
    [written] = (cache_dir(None) / "reuters").glob("not-test-*.txt")
    kept = [a.text.replace("\n", " ") for a in read_corpus(small_corpus) if a.lewis_split != "TEST" and a.text]
    assert written.read_text(encoding="utf-8").splitlines() == kept
    assert task.config.model.embeddings.startswith(str(cache_dir(None) / "pretrained" / "reuters-"))
    whole = make("reuters", data=str(small_corpus), subset="reuters46", embed_dim=8, hidden=8)
    whole.prepare()
    assert whole.config.model.embeddings is None and any("skipped" in line for line in whole.notes())
