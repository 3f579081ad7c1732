"""word2vec: the skip-gram sampler's statistics, a learning test, and the task end to end through the CLI."""

import json
import random

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.data.vectors import load_vectors
from seqtrain.models.skipgram import SkipGram, SkipGramBatches, keep_probabilities, negative_distribution
from seqtrain.similarity import Explorer
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def sampler(ids, docs, counts, window=2, negatives=5, sample=0.0, chunk=1000, seed=0):
    return SkipGramBatches(torch.tensor(ids), torch.tensor(docs), torch.tensor(counts), window, negatives, sample, chunk, seed)


def test_keep_probability_is_word2vecs_formula():
    counts = torch.tensor([1000, 10, 1])
    keep = keep_probabilities(counts, 1e-2)
    f = 1000 / 1011
    assert keep[0].item() == pytest.approx(((f / 1e-2) ** 0.5 + 1) * 1e-2 / f, rel=1e-5)
    assert keep[1].item() == 1.0 and keep[2].item() == 1.0  # rare words are always kept
    assert torch.equal(keep_probabilities(counts, 0), torch.ones(3))


def test_subsampling_drops_frequent_words_at_the_expected_rate():
    # word 0 is 90% of the stream, word 1 10%, word 2 rare
    ids = [0] * 9000 + [1] * 1000 + [2] * 5
    random.Random(0).shuffle(ids)
    batches = sampler(ids, [0] * len(ids), [9000, 1000, 5], sample=1e-2, chunk=len(ids))
    kept = next(iter(batches)).tokens
    expected = keep_probabilities(torch.tensor([9000, 1000, 5]), 1e-2)
    assert (kept == 0).sum().item() / 9000 == pytest.approx(expected[0].item(), abs=0.02)
    assert (kept == 1).sum().item() / 1000 == pytest.approx(expected[1].item(), abs=0.05)
    assert expected[0] < expected[1] < 1 and (kept == 2).sum().item() == 5  # the rare word always stays


def test_negatives_follow_unigram_to_the_three_quarters():
    counts = torch.tensor([800, 150, 40, 10])
    batches = sampler([0, 1, 2, 3] * 500, [0] * 2000, counts.tolist(), negatives=20, chunk=2000)
    drawn = torch.cat([b.negatives.flatten() for b in batches])
    observed = torch.bincount(drawn, minlength=4).float() / len(drawn)
    expected = negative_distribution(counts)
    assert torch.allclose(observed, expected, atol=0.01), (observed, expected)
    assert not torch.allclose(observed, counts / counts.sum(), atol=0.05)  # not the plain unigram


@pytest.mark.parametrize("size", [60, 100000])  # flags in a table, or a sort for a vocabulary far larger than the rows
def test_distinct_rows_are_torch_unique(size):
    from seqtrain.models.skipgram import _distinct

    rows = torch.randint(0, 60, (500,), generator=torch.Generator().manual_seed(0))
    unique, inverse = _distinct(rows, size)
    expected_unique, expected_inverse = torch.unique(rows, return_inverse=True)
    assert torch.equal(unique, expected_unique) and torch.equal(inverse, expected_inverse)


def test_windows_stay_inside_documents_and_within_reach():
    ids = list(range(10))
    docs = [0] * 5 + [1] * 5
    batch = next(iter(sampler(ids, docs, [1] * 10, window=3)))
    for k in range(3):
        for i in range(10 - k - 1):
            if batch.right[k, i] or batch.left[k, i]:
                assert docs[i] == docs[i + k + 1]
    assert not batch.right[:, 4].any() and not batch.left[:, 4].any()  # 4 and 5 are in different documents
    # every center has at least its nearest neighbour in its document
    assert batch.weights.min() >= 1
    assert batch.pairs == int(batch.right.sum() + batch.left.sum())


def test_reduced_window_averages_as_word2vec():
    # one long document: each center draws its reach uniformly in 1..window, so offset k is used with
    # probability (window - k + 1) / window
    n, window = 20000, 4
    batch = next(iter(sampler([0] * n, [0] * n, [n], window=window, chunk=n)))
    for k in range(window):
        share = batch.right[k, : n - k - 1].float().mean().item()
        assert share == pytest.approx((window - k) / window, abs=0.02)


def topic_corpus(path, seed=0, docs=1500):
    """Documents each drawn from one of four topics of five words: words co-occur only within a topic."""
    rng = random.Random(seed)
    topics = [[f"{t}{i}" for i in range(5)] for t in ("red", "blue", "sea", "sky")]
    lines = []
    for _ in range(docs):
        topic = rng.choice(topics)
        lines.append(" ".join(rng.choice(topic) for _ in range(12)))
    path.write_text("\n".join(lines) + "\n")
    return topics


def test_word2vec_puts_co_occurring_words_nearest(tmp_path):
    topics = topic_corpus(tmp_path / "topics.txt")
    result = invoke("fit", "--task", "word2vec", "--text", tmp_path / "topics.txt", "--logdir", tmp_path / "runs",
                    "--epochs", "3", "--embed-dim", "16", "--batch-size", "500", "--min-count", "1", "--lr", "0.05",
                    "--probe-words", "red0,sky3,absent")
    assert result.exit_code == 0, result.output
    assert "words/s" in result.output
    vectors = load_vectors(latest_run(tmp_path / "runs") / "vectors.txt")
    explorer = Explorer(vectors)
    for topic in topics:
        for word in topic:
            neighbours = {w for w, _ in explorer.similar(word, 4)}
            assert neighbours == set(topic) - {word}, (word, neighbours)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w2v")
    topic_corpus(folder / "topics.txt", docs=300)
    pairs = folder / "pairs.tsv"
    pairs.write_text("# word1\tword2\tscore\nred0\tred1\t9\nred0\tsky1\t1\nsea2\tsea3\t8\nblue1\tsea1\t2\nabsent\tred0\t5\n")
    result = invoke("fit", "--task", "word2vec", "--text", folder / "topics.txt", "--logdir", folder / "runs",
                    "--epochs", "2", "--embed-dim", "8", "--batch-size", "400", "--min-count", "1",
                    "--similarity-pairs", pairs, "--probe-words", "red0,sea1")
    assert result.exit_code == 0, result.output
    return latest_run(folder / "runs")


def test_run_writes_vectors_projector_and_per_epoch_probes(small_run):
    vectors = load_vectors(small_run / "vectors.txt")
    assert len(vectors.words) == 20 and vectors.dim == 8
    assert (small_run / "vectors.txt").read_text().splitlines()[0] == "20 8"  # word2vec's header
    config = (small_run / "projector_config.pbtxt").read_text()
    assert "tensor_path" in config and "metadata_path" in config
    folder = small_run / "00002" / "word2vec"
    assert len((folder / "tensors.tsv").read_text().splitlines()) == 20
    assert (folder / "metadata.tsv").read_text().split() == vectors.words
    first_row = [float(x) for x in (folder / "tensors.tsv").read_text().splitlines()[0].split("\t")]
    torch.testing.assert_close(torch.tensor(first_row), vectors.vectors[0], atol=1e-4, rtol=1e-4)
    events = EventAccumulator(str(small_run))
    events.Reload()
    assert len(events.Scalars("epoch/similarity_spearman")) == 2
    assert events.Scalars("epoch/similarity_pairs_covered")[0].value == 4  # 'absent' has no vector
    assert "neighbours/text_summary" in events.Tags()["tensors"]
    metrics = json.loads((small_run / "metrics.json").read_text())
    assert metrics["extra"]["all"]["similarity"]["pairs_covered"] == 4


def test_similar_and_analogy_read_a_word2vec_run(small_run):
    result = invoke("similar", small_run, "red0", "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 3 and "red0" not in result.output
    result = invoke("analogy", small_run, "red0", "red1", "sea0")
    assert result.exit_code == 0, result.output


def test_word2vec_refuses_bad_settings(tmp_path):
    (tmp_path / "t.txt").write_text("a b c\n")
    result = invoke("fit", "--task", "word2vec", "--text", tmp_path / "t.txt", "--optimizer", "sgd", "--logdir", tmp_path)
    assert result.exit_code == 2 and "Adam" in result.output
    result = invoke("fit", "--task", "word2vec", "--text", tmp_path / "t.txt", "--min-count", "5", "--logdir", tmp_path)
    assert result.exit_code == 2 and "--min-count" in result.output
    result = invoke("fit", "--task", "word2vec", "--text", tmp_path / "t.txt", "--similarity-pairs", tmp_path / "no.tsv")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_word2vec_reads_imdb_train_and_unsup_never_test(imdb_dir, tmp_path):
    import shutil

    root = tmp_path / "imdb"
    shutil.copytree(imdb_dir, root)
    unsup = root / "aclImdb" / "train" / "unsup"
    unsup.mkdir()
    (unsup / "0_0.txt").write_text("zyzzyva " * 10)
    (root / "aclImdb" / "test" / "pos" / "0_9.txt").write_text("testonlyword " * 50)
    result = invoke("fit", "--task", "word2vec", "--data-dir", root, "--logdir", tmp_path / "runs", "--epochs", "1",
                    "--embed-dim", "8", "--min-count", "1")
    assert result.exit_code == 0, result.output
    words = load_vectors(latest_run(tmp_path / "runs") / "vectors.txt").words
    assert "zyzzyva" in words and "testonlyword" not in words
    # the classifier accepts the same tree and trains on the labelled reviews only
    result = invoke("fit", "--task", "imdb", "--data-dir", root, "--logdir", tmp_path / "runs", "--epochs", "1",
                    "--max-steps", "1", "--hidden", "4")
    assert result.exit_code == 0, result.output
    from seqtrain.training.checkpoint import load_checkpoint

    vocab = load_checkpoint(latest_run(tmp_path / "runs") / "best.pt")["meta"]["vocab"]
    assert "zyzzyva" not in vocab and "testonlyword" not in vocab


def _per_pair_loss(c: torch.Tensor, o: torch.Tensor, batch) -> torch.Tensor:
    """word2vec's loss written pair by pair: -log s(c.o) for each pair, -log s(-c.n) for each of its center's negatives."""
    expected = c.new_zeros(())
    count = len(batch.tokens)
    for k in range(len(batch.right)):
        for i in range(count - k - 1):
            j = i + k + 1
            for center, context, on in ((i, j, batch.right[k, i]), (j, i, batch.left[k, i])):
                if on:
                    a, b = batch.tokens[center], batch.tokens[context]
                    expected = expected - torch.nn.functional.logsigmoid(c[a] @ o[b])
                    for n in batch.negatives[center]:
                        expected = expected - torch.nn.functional.logsigmoid(-(c[a] @ o[n]))
    return expected


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_skipgram_loss_and_gradients_match_the_per_pair_formula(scale):
    """The hand-written gradient against autograd through the per-pair loss, with repeated words (rows to merge)."""
    torch.manual_seed(0)
    model = SkipGram(6, 4)
    torch.nn.init.normal_(model.in_vectors.weight)
    torch.nn.init.normal_(model.out_vectors.weight)
    batches = sampler([0, 1, 2, 3, 1, 5, 1, 2, 4], [0] * 6 + [1] * 3, [1] * 6, window=3, negatives=3)
    batch = next(iter(batches))
    c = model.in_vectors.weight.detach().clone().requires_grad_()
    o = model.out_vectors.weight.detach().clone().requires_grad_()
    expected = _per_pair_loss(c, o, batch)
    (expected * scale).backward()
    loss = model(batch)
    (loss * scale).backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model.in_vectors.weight.grad.to_dense(), c.grad)
    torch.testing.assert_close(model.out_vectors.weight.grad.to_dense(), o.grad)
    assert model.out_vectors.weight.grad.is_sparse  # rows the batch names, not the whole table


def test_a_batch_whose_words_were_all_dropped_costs_nothing():
    model = SkipGram(6, 4)
    batch = next(iter(sampler([-1, -1, -1], [0] * 3, [1] * 6)))  # every word below --min-count
    assert len(batch.tokens) == 0
    loss = model(batch)
    loss.backward()
    assert loss.item() == 0 and model.in_vectors.weight.grad._nnz() == 0


def test_word2vec_reads_a_folder_of_two_imdb_archives(imdb_dir, tmp_path):
    """As ../shared/data/imdb holds them: the labelled reviews and train/unsup packed apart."""
    import tarfile

    unsup = tmp_path / "unsup" / "aclImdb" / "train" / "unsup"
    unsup.mkdir(parents=True)
    (unsup / "0_0.txt").write_text("zyzzyva " * 10)
    folder = tmp_path / "archives"
    folder.mkdir()
    with tarfile.open(folder / "aclImdb-labeled.tar.gz", "w:gz") as tar:
        tar.add(imdb_dir / "aclImdb", "aclImdb")
    with tarfile.open(folder / "aclImdb-unsup.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "unsup" / "aclImdb", "aclImdb")
    result = invoke("fit", "--task", "word2vec", "--data-dir", folder, "--logdir", tmp_path / "runs", "--epochs", "1",
                    "--embed-dim", "8", "--min-count", "1")
    assert result.exit_code == 0, result.output
    words = load_vectors(latest_run(tmp_path / "runs") / "vectors.txt").words
    assert "zyzzyva" in words and "movie" in words


@pytest.mark.parametrize("source", ["embedding", "skipgram"])
def test_row_adam_matches_sparse_adam(source):
    """On autograd's gradients (a row per lookup, repeated) and on SkipGramLoss's (distinct sorted rows)."""
    from seqtrain.models.skipgram import RowAdam

    torch.manual_seed(0)
    ours = SkipGram(10, 4)
    torch.nn.init.normal_(ours.out_vectors.weight)
    theirs = SkipGram(10, 4)
    theirs.load_state_dict(ours.state_dict())
    start = ours.in_vectors.weight.detach().clone()
    optimizers = [RowAdam(ours.parameters(), lr=0.1), torch.optim.SparseAdam(list(theirs.parameters()), lr=0.1)]
    for step in range(5):
        rows = torch.tensor([step, step + 1, step + 1, 7])  # a repeated row, and one row in every step
        batch = next(iter(sampler(rows.tolist(), [0] * 4, [1] * 10, window=2, negatives=2, seed=step)))
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            if source == "embedding":
                (model.in_vectors(rows) ** 2).sum().backward()
            else:
                model(batch).backward()
            optimizer.step()
    torch.testing.assert_close(ours.in_vectors.weight, theirs.in_vectors.weight, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.out_vectors.weight, theirs.out_vectors.weight, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours.in_vectors.weight[9], start[9]) and not torch.equal(ours.in_vectors.weight[7], start[7])
