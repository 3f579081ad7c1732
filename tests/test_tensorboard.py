"""The run's TensorBoard output as TensorBoard itself reads it."""

import json
import os
import subprocess
import sys

import pytest

from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin
from werkzeug.test import Client

from seqtrain.tasks import build_config
from seqtrain.training.tensorboard import RunLogger
from seqtrain.training.trainer import hparams_of


def ask_hparams_plugin(logdir, route: str, body: dict) -> dict:
    """What TensorBoard's HParams dashboard receives from /data/plugin/hparams/<route> for this logdir."""
    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(logdir))
    events.Reload()
    provider = data_provider.MultiplexerDataProvider(events, str(logdir))
    plugin = hparams_plugin.HParamsPlugin(base_plugin.TBContext(logdir=str(logdir), multiplexer=events, data_provider=provider))
    response = Client(plugin.get_plugin_apps()[f"/{route}"]).post("/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def test_runs_of_two_tasks_in_one_logdir_each_keep_their_settings_and_metrics(tmp_path):
    runs = {
        "csv-series-1": (build_config("csv-series", {"target": "load", "window": 12}), {"test_mse": 0.5, "test_mae": 0.4}),
        "text-1": (build_config("text", {"hidden": 16}), {"test_accuracy": 0.9, "test_macro_f1": 0.85}),
    }
    for name, (config, metrics) in runs.items():
        log = RunLogger(tmp_path / name)
        log.scalar("epoch/train/loss", 1.0, 1)
        log.hparams(hparams_of(config), metrics)
        log.close()

    experiment = ask_hparams_plugin(tmp_path, "experiment", {"experimentName": ""})
    settings = {info["name"] for info in experiment["hparamInfos"]}
    assert {"task", "data.window", "data.target", "data.text_col", "model.pooling"} <= settings
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert {"hparams/test_mse", "hparams/test_mae", "hparams/test_accuracy", "hparams/test_macro_f1"} <= metrics

    groups = ask_hparams_plugin(tmp_path, "session_groups", {"startIndex": 0, "sliceSize": 10, "allowedStatuses": [
        "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"], "colParams": [
        {"hparam": "task"}, *({"metric": {"tag": tag, "group": ""}} for tag in sorted(metrics))]})
    values = {group["hparams"]["task"]: {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
              for group in groups["sessionGroups"]}
    assert values["text"]["hparams/test_accuracy"] == pytest.approx(0.9)
    assert values["csv-series"]["hparams/test_mse"] == pytest.approx(0.5)


def test_the_writer_never_imports_an_installed_tensorflow(tmp_path):
    """A TensorFlow on the path (here a stand-in that logs on import, as the real one does) stays unimported."""
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import sys\nprint('tensorflow: oneDNN custom operations are on', file=sys.stderr)\n")
    script = (
        "import sys\n"
        "from seqtrain.training.tensorboard import RunLogger\n"
        f"log = RunLogger({str(tmp_path / 'run')!r})\n"
        "log.scalar('loss', 1.0, 1)\n"
        "log.close()\n"
        "print('tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False" and "tensorflow" not in done.stderr
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
