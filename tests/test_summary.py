"""`seqtrain summary`: each layer's real output shape, and why torch counts more LSTM parameters than Keras."""

import pytest
from typer.testing import CliRunner

from seqtrain.config import ClassifierModel
from seqtrain.models.classifier import SequenceClassifier
from seqtrain.models.summary import summarize
from seqtrain_cli.main import app

LECTURES = dict(cell="lstm", embed_dim=32, hidden=32, pooling="last")  # Embedding(10000, 32) -> LSTM(32) -> Dense(1)


def summary_of(**model):
    classifier = SequenceClassifier(10000, 2, ClassifierModel(**{**LECTURES, **model}))
    return summarize(classifier, *classifier.example_input())


def test_the_lectures_model_shows_its_pooled_shape_and_why_keras_counts_fewer():
    result = summary_of()
    assert [(row.name, row.kind, row.output_shape, row.params) for row in result.rows] == [
        ("embedding", "Embedding", "(None, 100, 32)", 320_000),
        ("embed_dropout", "Dropout", "(None, 100, 32)", 0),
        ("encoder.layers.0.fwd", "LSTM", "(None, 100, 32)", 8_448),  # 4 * (32*32 + 32*32 + 32 + 32)
        ("pool", "Pooling", "(None, 32)", 0),  # what Keras' LSTM(32) row shows: the last state
        ("head_dropout", "Dropout", "(None, 32)", 0),
        ("head", "Linear", "(None, 1)", 33),
    ]
    assert result.total == 328_481
    # Keras: 4 * (32*32 + 32*32 + 32) = 8,320 for the LSTM, 328,353 in all
    [note] = result.notes
    assert "b_ih and b_hh" in note and "128 parameters fewer (328,353)" in note


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional, width", [(False, 32), (True, 64)])
def test_the_pooled_row_has_one_vector_per_sequence(pooling, bidirectional, width):
    rows = {row.name: row for row in summary_of(pooling=pooling, bidirectional=bidirectional).rows}
    assert rows["pool"].output_shape == f"(None, {width})"


def test_layers_that_count_like_keras_get_no_note():
    gru = summary_of(cell="gru")  # Keras' GRU (reset_after=True) keeps both bias vectors too
    assert gru.notes == []
    loop = summary_of(recurrent_dropout=0.1)  # the loop cells keep one bias per gate, as Keras does
    assert loop.notes == []
    rows = {row.name: row for row in loop.rows}
    # one row for the whole recurrent layer, not its per-step projections
    assert (rows["encoder.layers.0.fwd.layers.0"].output_shape, rows["encoder.layers.0.fwd.layers.0"].params) == (
        "(None, 100, 32)",
        8_320,
    )
    assert not any(name.startswith("encoder.layers.0.fwd.layers.0.") for name in rows)


def test_summary_command_prints_the_note_under_the_table():
    result = CliRunner().invoke(app, ["summary", "--task", "imdb", "--cell", "lstm", "--embed-dim", "32", "--hidden", "32",
                                      "--max-vocab", "10000", "--no-bidirectional", "--pooling", "last"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("pool (Pooling)" in line and "(None, 32)" in line for line in lines)
    note = next(i for i, line in enumerate(lines) if line.startswith("Note: torch's LSTM/RNN layers keep two bias"))
    assert lines[note - 1].startswith("└") and "(328,353)" in lines[note]
    assert "Total params: 328,481" in result.output
