"""Defaults that read the data: a small own-data set gets a training budget in steps, not IMDB's 3 epochs."""

import json
import math
import random

from conftest import NEUTRAL
from seqtrain.tasks import build_config
from seqtrain.training.budget import MAX_EPOCHS, PATIENCE_STEPS, step_budget
from seqtrain.training.runs import latest_run
from test_text_task import CUES, invoke


def test_the_budget_raises_epochs_for_small_sets_only():
    small = build_config("text")
    line = step_budget(small, 1500, has_val=True)
    assert small.train.epochs == math.ceil(1000 / 24) and small.train.patience == math.ceil(PATIENCE_STEPS / 24)
    assert "24 steps an epoch" in line and "--min-steps 0" in line
    assert step_budget(small, 1500, has_val=True) is None  # idempotent: a resumed run lands on the same numbers
    tiny = build_config("text")
    step_budget(tiny, 40, has_val=True)
    assert tiny.train.epochs == MAX_EPOCHS
    imdb = build_config("imdb")
    assert step_budget(imdb, 22_500, has_val=True) is None and imdb.train.epochs == 3  # 352 steps an epoch
    off = build_config("text", {"min_steps": 0})
    assert step_budget(off, 360, has_val=True) is None and off.train.epochs == 3


def test_a_400_text_csv_learns_with_the_default_budget(tmp_path):
    rng = random.Random(7)
    rows = []
    for _ in range(400):
        label = rng.choice(sorted(CUES))
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(10, 30))]
        words.insert(rng.randrange(len(words)), rng.choice(CUES[label]))  # one cue word among 10-30
        rows.append(f"{label},{' '.join(words)}\n")
    path = tmp_path / "own.csv"
    path.write_text("label,text\n" + "".join(rows))
    # the default budget and schedule; a smaller network only to keep the test short
    result = invoke("fit", "--task", "text", "--data", path, "--embed-dim", "32", "--hidden", "24", "--threads", "1",
                    "--logdir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "training budget: 324 training texts make 6 steps an epoch" in result.output
    metrics = json.loads((latest_run(tmp_path / "runs") / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8, metrics["test"]  # chance: 1/3; IMDB's 3 epochs stayed near it
