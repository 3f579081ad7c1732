"""The CRF's log-partition, path scores and Viterbi against enumerating every tag path of tiny padded batches."""

from __future__ import annotations

import itertools

import torch

from seqtrain.models.crf import CRF, allowed_transitions

TAGS = ["B-A", "E-A", "I-A", "O", "S-A"]


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[torch.Tensor, list[int]]:
    """log Z and the best path of one sentence, by scoring all K^length paths."""
    scores, paths = [], []
    for path in itertools.product(range(len(crf.start)), repeat=length):
        tags = torch.tensor([path])
        scores.append(crf.path_score(emissions[None, :length], tags, torch.tensor([length]))[0])
        paths.append(list(path))
    stacked = torch.stack(scores)
    return torch.logsumexp(stacked, 0), paths[int(stacked.argmax())]


def test_forward_algorithm_and_viterbi_equal_enumeration_with_padding():
    torch.manual_seed(0)
    for scheme in ("bioes", "plain"):
        crf = CRF(TAGS, scheme)
        with torch.no_grad():
            for p in crf.parameters():
                p.normal_()
        lengths = torch.tensor([4, 1, 3, 2])
        emissions = torch.randn(4, 4, len(TAGS)) * 2
        log_z = crf.log_partition(emissions, lengths)
        best = crf.decode(emissions, lengths)
        for row, length in enumerate(lengths.tolist()):
            expected_z, expected_path = brute_force(crf, emissions[row], length)
            assert torch.allclose(log_z[row], expected_z, atol=1e-4)
            assert best[row, :length].tolist() == expected_path
            assert best[row, length:].eq(0).all()
        # the likelihood of every path sums to one
        gold = best.clone()
        nll = crf.nll(emissions, gold, lengths)
        assert (nll >= 0).all()


def test_padding_beyond_a_sentence_changes_nothing():
    torch.manual_seed(1)
    crf = CRF(TAGS, "bioes")
    emissions = torch.randn(1, 5, len(TAGS))
    longer = torch.cat([emissions, torch.randn(1, 3, len(TAGS)) * 100], dim=1)
    lengths = torch.tensor([5])
    assert torch.allclose(crf.log_partition(emissions, lengths), crf.log_partition(longer, lengths))
    assert crf.decode(longer, lengths)[0, :5].tolist() == crf.decode(emissions, lengths)[0].tolist()


def test_scheme_forbids_invalid_moves():
    start, moves, end = allowed_transitions(TAGS, "bioes")
    index = {t: i for i, t in enumerate(TAGS)}
    assert not moves[index["O"], index["I-A"]] and not moves[index["O"], index["E-A"]]
    assert not moves[index["B-A"], index["O"]] and moves[index["B-A"], index["E-A"]] and moves[index["E-A"], index["B-A"]]
    assert not start[index["I-A"]] and not end[index["B-A"]] and end[index["E-A"]]
    start, moves, _ = allowed_transitions(["B-A", "I-A", "I-B", "O"], "iob2")
    assert not moves[3, 1] and moves[0, 1] and moves[1, 1] and not moves[1, 2] and not start[1]
    # decoding never takes a forbidden move, whatever the emissions say
    crf = CRF(TAGS, "bioes")
    emissions = torch.zeros(1, 3, len(TAGS))
    emissions[0, :, index["I-A"]] = 50.0
    path = [TAGS[i] for i in crf.decode(emissions, torch.tensor([3]))[0].tolist()]
    assert path == ["B-A", "I-A", "E-A"]
