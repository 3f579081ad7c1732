"""Settings per task: schemas, TOML round trips, ranges, and the flags a task refuses."""

import pytest

from seqtrain.config import Config, SeriesData, WindowData
from seqtrain.errors import SeqtrainError
from seqtrain.tasks import REGISTRY, build_config, config_from_dict, make_task, task_class
from seqtrain.tasks.base import Loader


def test_toml_round_trip_holds_only_the_tasks_settings(tmp_path):
    config = build_config("imdb", {"cell": "lstm", "bidirectional": False, "lr": 0.003, "data": 'a "q" path'})
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    from seqtrain.tasks import read_config

    assert read_config(path) == config
    text = path.read_text()
    for foreign in ("window", "horizon", "teacher_forcing", "num_pairs", "bptt", "attention"):
        assert foreign not in text
    assert "window = 50" in build_config("sine").to_toml() and "pooling" not in build_config("sine").to_toml()


def test_each_task_has_its_own_schema_and_defaults():
    assert isinstance(build_config("jena").data, SeriesData)
    assert type(build_config("sine").data) is WindowData  # generated: no --data, --target, --val-split
    assert build_config("imdb").model.hidden == 96 and build_config("sine").model.hidden == 32
    for name, cls in REGISTRY.items():
        assert cls.default_config().task == name and cls.schema.fields()  # every task builds its defaults


def test_a_setting_the_task_does_not_use_is_refused_with_its_name():
    with pytest.raises(SeqtrainError, match="--window is not a setting of task 'imdb'"):
        build_config("imdb", {"window": 10})
    with pytest.raises(SeqtrainError, match="--bidirectional is not a setting of task 'shakespeare'"):
        build_config("shakespeare", {"bidirectional": True})
    with pytest.raises(SeqtrainError, match="--data is not a setting of task 'sine'"):
        build_config("sine", {"data": "x.csv"})
    with pytest.raises(SeqtrainError, match="--cell must be one of rnn, lstm, gru"):
        build_config("imdb", {"cell": "transformer"})


@pytest.mark.parametrize(
    "task,settings,message",
    [
        ("imdb", {"max_steps": -1}, "--max-steps must be at least 0"),
        ("sine", {"epochs": 0}, "--epochs must be at least 1"),
        ("csv-series", {"val_split": 1.5, "target": "x"}, "--val-split must be below 1"),
        ("translate", {"val_split": 0.5}, "--val-split must be below 0.5"),
        ("imdb", {"dropout": 1.0}, "--dropout must be below 1"),
        ("imdb", {"lr": 0.0}, "--lr must be positive"),
        ("dates", {"teacher_forcing": 1.5}, "--teacher-forcing must be in [0, 1]"),
        ("pairs", {}, "--task pairs needs --data FILE"),
    ],
)
def test_values_are_checked_before_any_data_loads(task, settings, message):
    with pytest.raises(SeqtrainError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_task(build_config(task, settings))


def test_seq2seq_levels_per_side_and_level_for_both():
    task = make_task(build_config("pairs", {"data": "x.tsv", "source_level": "char", "target_level": "word"}))
    assert (task.config.data.source_level, task.config.data.target_level) == ("char", "word")
    task = make_task(build_config("translate", {"level": "char"}))
    assert (task.config.data.source_level, task.config.data.target_level) == ("char", "char")


def test_config_from_a_checkpoint_dict_refuses_unknown_keys():
    raw = build_config("sine").to_dict()
    assert config_from_dict(raw) == build_config("sine")
    raw["data"]["pooling"] = "max"
    with pytest.raises(SeqtrainError, match="--pooling is not a setting of task 'sine'"):
        config_from_dict(raw)


def test_every_tasks_loaders_follow_the_loader_protocol(imdb_dir):
    task = make_task(build_config("sine", {"batch_size": 256}))
    data = task.prepare(quiet=True)
    for loader in (data.train, data.val, data.test):
        assert isinstance(loader, Loader)
    assert isinstance(make_task(build_config("imdb", {"data": str(imdb_dir)})).prepare().train, Loader)


def test_task_objects_are_per_run():
    a, b = make_task(build_config("sine", {"horizon": 3})), make_task(build_config("sine"))
    assert a is not b and a.config.data.horizon == 3 and b.config.data.horizon == 1
    assert task_class("sine") is type(a)
    assert isinstance(a.config, Config)
