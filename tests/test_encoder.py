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


def per_layer(encoder, x, lengths):
    """The encoder's output through its per-layer packed path (what it ran before the one-call kernel)."""
    stacks = type(encoder).stacks
    try:
        type(encoder).stacks = lambda self: False
        return encoder(x, lengths)
    finally:
        type(encoder).stacks = stacks


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("cell,layers,bidirectional,mode", list(itertools.product(
    ["rnn", "lstm", "gru"], [1, 2], [False, True], ["train, no dropout", "eval, dropout"])))
def test_packing_runs_all_layers_in_one_kernel_call_with_the_same_outputs_and_gradients(
    cell, layers, bidirectional, mode, device, monkeypatch
):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN in full float32 on CUDA
    torch.manual_seed(0)
    dropout = 0.5 if mode.startswith("eval") else 0.0
    encoder = RecurrentEncoder(cell, 5, 4, layers=layers, bidirectional=bidirectional, dropout=dropout, packing="on")
    encoder.to(device).train(mode.startswith("train"))
    assert encoder.stacks()
    x = torch.randn(4, 9, 5, device=device)
    lengths = torch.tensor([9, 4, 1, 7], device=device)
    results = []
    for run in (encoder.forward, lambda x, lengths: per_layer(encoder, x, lengths)):
        encoder.zero_grad()
        xs = x.clone().requires_grad_()
        out, last = run(xs, lengths)
        (out.square().sum() + last.sin().sum()).backward()
        results.append((out, last, xs.grad, [p.grad.clone() for p in encoder.parameters()]))
    (out_a, last_a, dx_a, grads_a), (out_b, last_b, dx_b, grads_b) = results
    close = {"atol": 1e-5, "rtol": 1e-5} if device == "cpu" else {"atol": 1e-4, "rtol": 1e-4}
    torch.testing.assert_close(out_a, out_b, **close)
    torch.testing.assert_close(last_a, last_b, **close)
    torch.testing.assert_close(dx_a, dx_b, **close)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, **close)


def test_dropout_between_layers_keeps_the_per_layer_path_in_training():
    encoder = RecurrentEncoder("gru", 5, 4, layers=2, dropout=0.3, packing="on")
    assert not encoder.train().stacks() and encoder.eval().stacks()
    assert not RecurrentEncoder("gru", 5, 4, layers=2, packing="off").stacks()
    assert RecurrentEncoder("gru", 5, 4, layers=1, dropout=0.3, packing="on").train().stacks()
