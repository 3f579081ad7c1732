import pytest

from seqtrain.config import Config
from seqtrain.errors import SeqtrainError


def test_toml_round_trip(tmp_path):
    config = Config(task="imdb")
    config.update({"model.cell": "gru", "model.bidirectional": True, "train.lr": 0.003, "data.data_dir": 'a "q" path'})
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert Config.from_toml(path) == config


def test_unknown_setting_and_bad_choice_are_errors():
    config = Config()
    with pytest.raises(SeqtrainError, match="unknown setting"):
        config.update({"model.nope": 1})
    with pytest.raises(SeqtrainError, match="--cell must be one of rnn, lstm, gru"):
        config.update({"model.cell": "transformer"})
