import itertools

import pytest
import torch

from seqtrain.config import ClassifierModel
from seqtrain.models.classifier import SequenceClassifier
from seqtrain.models.recurrent import RecurrentEncoder, reverse_padded

CASES = list(itertools.product(["rnn", "lstm", "gru"], ["last", "mean", "max"], [False, True], ["on", "off"]))


@pytest.mark.parametrize("cell,pooling,bidirectional,packing", CASES)
def test_padding_never_changes_the_output(cell, pooling, bidirectional, packing):
    torch.manual_seed(0)
    cfg = ClassifierModel(cell=cell, embed_dim=8, hidden=6, layers=2, bidirectional=bidirectional, pooling=pooling, packing=packing)
    model = SequenceClassifier(50, 3, cfg).eval()
    short = torch.tensor([[4, 9, 2, 7, 3]])
    alone = model(short, torch.tensor([5]))
    # The same sequence padded inside a batch with a longer one.
    batch = torch.zeros(2, 12, dtype=torch.long)
    batch[0, :5] = short[0]
    batch[1] = torch.randint(1, 50, (12,))
    together = model(batch, torch.tensor([5, 12]))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_and_masked_paths_agree(cell):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(cell, 5, 4, layers=2, bidirectional=True).eval()
    x = torch.randn(3, 9, 5)
    lengths = torch.tensor([9, 4, 1])
    encoder.packing = "on"
    packed_out, packed_last = encoder(x, lengths)
    encoder.packing = "off"
    masked_out, masked_last = encoder(x, lengths)
    torch.testing.assert_close(packed_out, masked_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed_last, masked_last, atol=1e-5, rtol=1e-5)
    assert masked_out[1, 4:].abs().sum() == 0  # padding positions are zero


def test_reverse_padded_reverses_only_the_valid_prefix():
    x = torch.tensor([[1, 2, 3, 0], [5, 6, 0, 0]]).unsqueeze(-1)
    out = reverse_padded(x, torch.tensor([3, 2]))
    assert out.squeeze(-1).tolist() == [[3, 2, 1, 0], [6, 5, 0, 0]]
    assert torch.equal(reverse_padded(out, torch.tensor([3, 2])), x)


def test_binary_classifier_has_one_logit():
    model = SequenceClassifier(20, 2, ClassifierModel(embed_dim=4, hidden=3))
    assert model(*model.example_input(batch=3, steps=7)).shape == (3,)
