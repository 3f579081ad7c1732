"""The fused CPU kernel (models/fused.py) against nn.RNN/LSTM/GRU: same outputs, same gradients, same parameters."""

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqtrain.models import fused, fused_loop
from seqtrain.models.fused import FusedGRU, GRUFunction, LSTMFunction, PythonLoop, RNNFunction, Workspace
from seqtrain.models.recurrent import RecurrentEncoder, make_rnn

REFERENCE = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(params=["compiled", "python"])
def loop(request, monkeypatch):
    """Run the test with the compiled per-step loops (fused_loop.cpp), then with the Python ones."""
    chosen = PythonLoop
    if request.param == "compiled":
        chosen = fused_loop.compiled_loop()
        if chosen is None:
            pytest.skip("the compiled recurrent loop could not be built here (no C++ compiler or ninja)")
    monkeypatch.setattr(fused, "loop", lambda like, weight=None: chosen)
    return request.param


def pair(cell: str, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0):
    """nn's module and the fused one with the same weights."""
    reference = REFERENCE[cell](input_size, hidden, num_layers=layers, batch_first=True, dropout=dropout)
    fused = make_rnn(cell, input_size, hidden, layers, dropout, kernel="fused")
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def run(module: nn.Module, x: torch.Tensor, state, weights: torch.Tensor):
    """Outputs, final state and the gradients of a loss over both w.r.t. input, initial state and parameters."""
    out, final = module(x, state)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * weights).sum() + sum((f * f).sum() for f in finals)
    leaves = [x, *(state if isinstance(state, tuple) else (state,) if state is not None else ())]
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return [out, *finals, *grads]


def initial_state(cell: str, layers: int, batch: int, hidden: int, zero: bool):
    if zero:
        return None
    make = lambda: torch.randn(layers, batch, hidden, requires_grad=True)  # noqa: E731
    return (make(), make()) if cell == "lstm" else make()


@pytest.mark.parametrize(
    "cell,size,layers,zero_state",
    list(itertools.product(["rnn", "lstm", "gru"], [(3, 7, 5, 4), (1, 1, 2, 3), (4, 12, 6, 16)], [1, 2], [True, False])),
)
def test_outputs_and_every_gradient_match_nn(cell, size, layers, zero_state, loop):
    torch.manual_seed(0)
    batch, steps, inputs, hidden = size
    reference, fused = pair(cell, inputs, hidden, layers)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    state = initial_state(cell, layers, batch, hidden, zero_state)
    weights = torch.randn(batch, steps, hidden)
    assert fused.uses_fused(x)
    for expected, got in zip(run(reference, x, state, weights), run(fused, x, state, weights), strict=True):
        torch.testing.assert_close(got, expected, **TOL)


@pytest.mark.parametrize("cell,hidden", [("rnn", 256), ("lstm", 256), ("gru", 256), ("lstm", 16), ("gru", 16)])
def test_layers_on_two_threads_match_nn(cell, hidden, loop):
    """Two threads split the batch rows (41: not evenly), each summing its own part of a small dW_hh in the loop
    (hidden 16) or leaving a large one to one product afterwards (256)."""
    torch.manual_seed(0)
    reference, fused = pair(cell, 6, hidden)
    x = torch.randn(41, 3, 6, requires_grad=True)
    weights = torch.randn(41, 3, hidden)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for expected, got in zip(run(reference, x, None, weights), run(fused, x, None, weights), strict=True):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)


def leaf(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def float64_layer(gates: int, cell_state: bool, batch: int = 2, inputs: int = 4, hidden: int = 3):
    """(initial states, weights) of one float64 layer with `gates` gates, for gradcheck."""
    torch.manual_seed(0)
    states = (leaf(batch, hidden), leaf(batch, hidden)) if cell_state else (leaf(batch, hidden),)
    weights = (leaf(gates * hidden, inputs), leaf(gates * hidden, hidden), leaf(gates * hidden), leaf(gates * hidden))
    return states, weights


LAYER_FUNCTIONS = [(RNNFunction, 1, False), (GRUFunction, 3, False), (LSTMFunction, 4, True)]


@pytest.mark.parametrize("function,gates,cell_state", LAYER_FUNCTIONS)
def test_gradcheck_in_float64(function, gates, cell_state, loop):
    states, weights = float64_layer(gates, cell_state)
    assert torch.autograd.gradcheck(function.apply, (leaf(2, 3, 4), *states, *weights))


@pytest.mark.parametrize("function,gates,cell_state", LAYER_FUNCTIONS)
def test_gradcheck_of_the_folded_embedding_in_float64(function, gates, cell_state, loop):
    """Token ids into an embedding table (TokenInputs): repeated tokens and a padding row whose gradient stays zero."""
    states, weights = float64_layer(gates, cell_state)
    tokens = torch.tensor([[1, 3, 1, 0], [5, 5, 0, 0]])

    def folded(table, *rest):
        return function.apply(table, *rest, tokens, None)

    assert torch.autograd.gradcheck(folded, (leaf(6, 4), *states, *weights))
    table = leaf(6, 4)
    out = function.apply(table, *states, *weights, tokens, 0)[0]
    (d_table,) = torch.autograd.grad(out.sum(), table)
    assert d_table[0].abs().sum() == 0 and d_table[2].abs().sum() == 0  # padding row, and a token never seen
    assert d_table[1].abs().sum() > 0


@pytest.mark.parametrize("cell,bidirectional,layers", [("lstm", False, 1), ("gru", True, 2), ("rnn", False, 2)])
def test_an_encoder_folding_its_embedding_matches_nn(cell, bidirectional, layers, loop):
    """RecurrentEncoder given token ids and their embedding equals nn's layers after nn.Embedding, gradients too."""
    torch.manual_seed(0)
    vocab, lengths = 30, torch.tensor([9, 4, 7])
    tokens = torch.randint(1, vocab, (3, 9)) * (torch.arange(9) < lengths.unsqueeze(1))  # 0-padded after each length
    encoders = [RecurrentEncoder(cell, 5, 8, layers, bidirectional, kernel=kernel) for kernel in ("fused", "torch")]
    encoders[1].load_state_dict(encoders[0].state_dict())
    embeddings = [nn.Embedding(vocab, 5, padding_idx=0) for _ in range(2)]
    embeddings[1].load_state_dict(embeddings[0].state_dict())
    assert encoders[0].folds(embeddings[0]) and not encoders[1].folds(embeddings[1])
    results = []
    for encoder, embedding in zip(encoders, embeddings, strict=True):
        outputs, last = encoder(tokens, lengths, embedding=embedding)
        loss = (outputs * torch.linspace(-1, 1, outputs.shape[-1])).sum() + (last * last).sum()
        params = [embedding.weight, *encoder.parameters()]
        results.append([outputs, last, *torch.autograd.grad(loss, params)])
    for expected, got in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, **TOL)
    assert results[0][2][0].abs().sum() == 0  # the padding row's gradient


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_dicts_load_either_way(cell):
    reference, fused = pair(cell, 3, 4, layers=2)
    assert list(fused.state_dict()) == list(reference.state_dict())
    back = REFERENCE[cell](3, 4, num_layers=2, batch_first=True)
    back.load_state_dict(fused.state_dict())
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name])


@pytest.mark.parametrize("cell,bidirectional", list(itertools.product(["rnn", "lstm", "gru"], [False, True])))
def test_masked_encoder_matches_nn_with_variable_lengths(cell, bidirectional, loop):
    torch.manual_seed(0)
    encoders = {}
    for kernel in ("torch", "fused"):
        torch.manual_seed(1)
        encoders[kernel] = RecurrentEncoder(cell, 5, 6, layers=2, bidirectional=bidirectional, packing="off", kernel=kernel)
    x = torch.randn(4, 9, 5)
    lengths = torch.tensor([9, 3, 1, 6])
    results = {}
    for kernel, encoder in encoders.items():
        inputs = x.clone().requires_grad_()
        out, last = encoder(inputs, lengths)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() + last.square().sum()
        results[kernel] = [out, last, *torch.autograd.grad(loss, [inputs, *encoder.parameters()])]
    for expected, got in zip(results["torch"], results["fused"], strict=True):
        torch.testing.assert_close(got, expected, **TOL)


@pytest.fixture
def python_loop_only(monkeypatch):
    """As on a machine where the compiled loop cannot be built."""
    monkeypatch.setattr(fused, "compiled_loop", lambda: None)


@pytest.fixture
def compiled():
    if fused_loop.compiled_loop() is None:
        pytest.skip("the compiled recurrent loop could not be built here (no C++ compiler or ninja)")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_auto_with_the_compiled_loop_trains_every_cell_fused_and_infers_fused_where_nn_is_not(cell, compiled):
    module = make_rnn(cell, 3, 4)
    x = torch.randn(2, 5, 3)
    assert module.uses_fused(x) and module.double().uses_fused(x.double())
    onednn = cell == "lstm" and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    with torch.no_grad():
        assert module.float().uses_fused(x) is not onednn  # oneDNN's float32 LSTM inference stays faster
        assert module.double().uses_fused(x.double())  # oneDNN's LSTM is float32 only
    module.float()
    assert not module.uses_fused(pack_padded_sequence(x, torch.tensor([5, 2]), batch_first=True))
    assert not make_rnn(cell, 3, 4, kernel="torch").uses_fused(x)


def test_the_classifier_trains_its_lstm_with_the_compiled_loop(compiled, monkeypatch):
    """The lectures' model (an LSTM encoder, kernel auto) runs the compiled loop forward and backward."""
    calls = []
    real = fused_loop.compiled_loop()

    class Spy:
        def __init__(self, like, weight=None):
            pass

        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(fused, "loop", Spy)
    encoder = RecurrentEncoder("lstm", 5, 6)
    embedded = torch.randn(4, 9, 5, requires_grad=True)  # as an embedding layer's output
    out, last = encoder(embedded, torch.tensor([9, 3, 1, 6]))
    (out.sum() + last.sum()).backward()
    assert calls == ["lstm_forward", "lstm_backward"]  # the input products (projection, dx) step by step inside


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_auto_with_the_python_loop_runs_fused_only_for_cpu_training_on_padded_batches(cell, python_loop_only):
    module = make_rnn(cell, 3, 4)
    x = torch.randn(2, 5, 3)
    assert module.uses_fused(x)
    with torch.no_grad():
        assert not module.uses_fused(x)
    assert not module.uses_fused(pack_padded_sequence(x, torch.tensor([5, 2]), batch_first=True))
    assert not make_rnn(cell, 3, 4, kernel="torch").uses_fused(x)


def test_auto_with_the_python_loop_leaves_lstm_to_onednn_where_nn_uses_it(python_loop_only, monkeypatch):
    lstm = make_rnn("lstm", 3, 4)
    x = torch.randn(2, 5, 3)
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    assert lstm.uses_fused(x) is not onednn
    assert lstm.double().uses_fused(x.double())  # oneDNN's LSTM is float32 only
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert lstm.float().uses_fused(x)


def test_a_failed_build_falls_back_to_the_python_loop_with_a_one_line_notice(monkeypatch, capsys):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'x': [1/2] c++ -MMD -c fused_loop.cpp\n"
                           "/bin/sh: 1: c++: not found\nninja: build stopped: subcommand failed.")

    monkeypatch.setattr(fused_loop, "_loop", fused_loop._UNSET)
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    assert fused_loop.compiled_loop() is None and fused.loop(torch.zeros(1)) is PythonLoop
    notice = capsys.readouterr().err.strip()
    assert notice.count("\n") == 0 and "Python loop" in notice and notice.endswith("(/bin/sh: 1: c++: not found)")
    torch.manual_seed(0)
    reference, layer = pair("gru", 3, 4)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(layer(x)[0], reference(x)[0], **TOL)


def test_a_build_lock_left_by_a_killed_build_does_not_block_loading(compiled, monkeypatch):
    """torch's own lock file waits forever for a builder that died; under seqtrain's lock it is known stale."""
    from torch.utils import cpp_extension

    flags = fused_loop.compile_flags()
    name = fused_loop.build_name(flags)
    folder = fused_loop.build_root(cpp_extension) / name
    (folder / "lock").touch()
    monkeypatch.setattr(fused_loop, "_loop", fused_loop._UNSET)
    assert fused_loop.compiled_loop() is not None
    assert not (folder / "lock").exists()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_input_still_runs_nn(cell):
    torch.manual_seed(0)
    reference, fused = pair(cell, 3, 4)
    packed = pack_padded_sequence(torch.randn(2, 5, 3), torch.tensor([5, 2]), batch_first=True)
    expected, got = reference(packed)[0], fused(packed)[0]
    torch.testing.assert_close(got.data, expected.data)


def test_truncated_backprop_carries_state_like_nn(loop):
    torch.manual_seed(0)
    reference, fused = pair("lstm", 3, 5, layers=2)
    chunks = torch.randn(2, 3, 4, 3).unbind(0)  # two chunks of 4 steps
    for module in (reference, fused):
        state = None
        for chunk in chunks:
            out, state = module(chunk, state)
            out.sum().backward()
            state = tuple(s.detach() for s in state)
    for expected, got in zip(reference.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(got.grad, expected.grad, **TOL)


def test_dropout_between_layers_only_in_training(loop):
    torch.manual_seed(0)
    reference, fused = pair("gru", 3, 8, layers=2, dropout=0.5)
    x = torch.randn(2, 6, 3, requires_grad=True)
    reference.eval(), fused.eval()
    torch.testing.assert_close(fused(x)[0], reference(x)[0], **TOL)  # eval: no dropout (fused runs: x needs grad)
    fused.train()
    assert not torch.allclose(fused(x)[0], reference(x)[0], **TOL)


def test_two_forwards_before_one_backward_accumulate_like_nn(loop):
    torch.manual_seed(0)
    reference, fused = pair("gru", 3, 4)
    x, y = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    for module in (reference, fused):
        (module(x)[0].sum() + module(y)[0].square().sum()).backward()
    for expected, got in zip(reference.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(got.grad, expected.grad, **TOL)


@pytest.mark.parametrize("cell,frozen", list(itertools.product(["rnn", "lstm", "gru"], ["weight_ih_l0", "bias_hh_l0"])))
def test_frozen_parameters_and_constant_input_get_no_gradient_and_the_rest_match(cell, frozen, loop):
    torch.manual_seed(0)
    reference, fused = pair(cell, 3, 4)
    x = torch.randn(2, 5, 3)
    for module in (reference, fused):
        getattr(module, frozen).requires_grad_(False)
        module(x)[0].square().sum().backward()
    assert getattr(fused, frozen).grad is None
    for expected, got in zip(reference.parameters(), fused.parameters(), strict=True):
        if expected.requires_grad:
            torch.testing.assert_close(got.grad, expected.grad, **TOL)


def test_workspace_memory_stays_bounded_over_many_sequence_lengths(monkeypatch, loop):
    """Bucketed batches bring a new length almost every step: the kept buffers must not grow with them."""
    workspace = Workspace(limit_bytes=4 * 2**20)
    monkeypatch.setattr("seqtrain.models.fused.WORKSPACE", workspace)
    torch.manual_seed(0)
    layer = FusedGRU(8, 64, batch_first=True)
    for steps in range(20, 120, 3):
        out, _ = layer(torch.randn(16, steps, 8))
        out.sum().backward()
    kept = sum(flat.numel() * flat.element_size() for pool in workspace.free.values() for flat in pool)
    assert 0 < kept == workspace.held_bytes <= workspace.limit_bytes
    reference = nn.GRU(8, 64, batch_first=True)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(16, 57, 8)
    torch.testing.assert_close(layer(x)[0], reference(x)[0])  # a reused, larger buffer gives the same result


@pytest.mark.parametrize("shape", [(2, 1, 3), (1, 4, 3)], ids=["one-step", "one-sequence"])
def test_outputs_are_never_views_of_reused_buffers(shape, loop):
    torch.manual_seed(0)
    reference, layer = pair("gru", 3, 4)
    x, y = torch.randn(*shape), torch.randn(*shape)
    with torch.no_grad():
        out, last = layer(x)
        layer(y)  # reuses the workspace buffers the first call gave back
    torch.testing.assert_close(out, reference(x)[0], **TOL)
    torch.testing.assert_close(last, reference(x)[1], **TOL)


def test_buffers_made_in_inference_mode_are_not_reused_outside_it():
    torch.manual_seed(0)
    reference, layer = pair("gru", 3, 4)
    x = torch.randn(2, 5, 3)
    with torch.inference_mode():
        layer(x)
    torch.testing.assert_close(layer(x)[0], reference(x)[0], **TOL)


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        make_rnn("lstm", 2, 3, kernel="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_on_cuda_auto_keeps_cudnn_and_fused_matches_it(cell, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # matmuls are full float32 by default
    torch.manual_seed(0)
    reference, fused = (m.cuda() for m in pair(cell, 5, 8, layers=2))
    x = torch.randn(3, 7, 5, device="cuda", requires_grad=True)
    state = initial_state(cell, 2, 3, 8, zero=False)
    state = tuple(s.detach().cuda().requires_grad_() for s in state) if cell == "lstm" else state.detach().cuda().requires_grad_()
    weights = torch.randn(3, 7, 8, device="cuda")
    assert not make_rnn(cell, 5, 8).cuda().uses_fused(x) and fused.uses_fused(x)
    for expected, got in zip(run(reference, x, state, weights), run(fused, x, state, weights), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_two_installs_build_into_two_folders(tmp_path, monkeypatch):
    """build.ninja records the source's path: installs in two places (same text) must not share a build folder."""
    flags = fused_loop.compile_flags()
    here = fused_loop.build_name(flags)
    copy = tmp_path / "other-install" / "fused_loop.cpp"
    copy.parent.mkdir()
    copy.write_bytes(fused_loop.SOURCE.read_bytes())
    monkeypatch.setattr(fused_loop, "SOURCE", copy)
    assert fused_loop.build_name(flags) != here
    assert fused_loop.build_name(flags + ["-O2"]) != fused_loop.build_name(flags)


def fake_builder(monkeypatch, tmp_path):
    """cpp_extension.load replaced by one that writes the library where it is missing (as ninja would, in
    milliseconds); returns the names it was called with."""
    from torch.utils import cpp_extension

    calls = []

    def load(name, sources, build_directory, **kwargs):
        calls.append(name)
        library = Path(build_directory) / f"{name}.so"
        if not library.exists():
            library.write_bytes(b"built")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(fused_loop, "_loop", fused_loop._UNSET)
    monkeypatch.setattr(fused_loop, "_may_build", True)  # as in a fresh process (a CLI command run here may have cleared it)
    return calls


def test_a_build_says_so_in_one_line_and_a_loaded_build_says_nothing(tmp_path, monkeypatch, capsys):
    calls = fake_builder(monkeypatch, tmp_path)
    assert fused_loop.compiled_loop() is not None and len(calls) == 1
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "compiling the recurrent loop into" in notice and str(tmp_path) in notice
    monkeypatch.setattr(fused_loop, "_loop", fused_loop._UNSET)
    fused_loop.compiled_loop()
    assert capsys.readouterr().err == ""


def test_a_command_that_runs_a_trained_model_does_not_wait_for_a_build(tmp_path, monkeypatch, capsys):
    calls = fake_builder(monkeypatch, tmp_path)
    fused_loop.use_prebuilt_only()
    assert fused_loop.compiled_loop() is None and calls == []
    assert "seqtrain build" in capsys.readouterr().err
    lstm = fused.FusedLSTM(3, 4, batch_first=True)
    with torch.no_grad():
        assert not lstm.uses_fused(torch.zeros(1, 2, 3))  # nn's kernel, not the slow Python loop
    assert fused_loop.build() == tmp_path / fused_loop.build_name(fused_loop.compile_flags()) and calls
