"""Text classification of a user's own labelled texts (`--task text --data PATH`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from seqtrain.config import ClassifierModel, Schema, TextData, TrainSettings
from seqtrain.data.download import cache_dir
from seqtrain.data.labelled import Labelled, read_labelled
from seqtrain.data.sources import local_source
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.base import register
from seqtrain.tasks.classification import TextClassificationTask, cached_corpus, text_bytes
from seqtrain.tasks.imdb import RECIPE
from seqtrain.tasks.pretrain import in_domain_vectors


@register("text")
class TextTask(TextClassificationTask):
    description = (
        "Your own labelled texts: class folders, or a CSV/TSV/JSON Lines file; one label or several per text."
    )
    schema: ClassVar[Schema] = Schema(TrainSettings, ClassifierModel, TextData)
    defaults = RECIPE  # the supervised recipe measured on IMDB, a sound start for any text

    def validate(self) -> None:
        super().validate()
        data = self.config.data
        if data.val_split + data.test_split >= 1:
            raise SeqtrainError(f"--val-split {data.val_split} and --test-split {data.test_split} leave no training data")
        if data.folds > 1 and data.fold >= data.folds:
            raise SeqtrainError(f"--fold {data.fold} is not one of the {data.folds} folds (0 to {data.folds - 1})")
        if data.folds > 1 and data.test_data:
            raise SeqtrainError("--folds makes its own test folds: drop --test-data")

    def load_corpus(self, quiet: bool) -> dict[str, Any]:
        data = self.config.data
        path = local_source(data)
        if path is None:  # checked here, not in validate(), so that `seqtrain summary --task text` needs no data
            raise SeqtrainError(
                "--task text needs --data PATH: a folder of class folders (PATH/<label>/*.txt), "
                "a .csv, .tsv or .jsonl file with text and label columns, or a `label text` file (--format lines)"
            )
        extra = {flag: given_path(flag, value) for flag, value in (("--val-data", data.val_data), ("--test-data", data.test_data)) if value}
        settings = (data.text_col, data.label_col, data.label_sep, data.encoding, data.format, data.coarse_sep, *extra)
        limit = data.max_text_tokens

        def read_one(where: Path) -> Labelled:
            return read_labelled(
                where, data.text_col, data.label_col, data.label_sep, data.encoding, max_bytes=text_bytes(limit),
                format=data.format, coarse_sep=data.coarse_sep,
            )

        def read() -> Labelled:
            out = read_one(path)
            if extra and out.test is not None:
                raise SeqtrainError(f"{path} already holds a test split (train/ and test/ folders): drop --val-data/--test-data")
            base = len(out.texts)
            parts = {flag: read_one(where) for flag, where in extra.items()}
            for part in parts.values():
                out.extend(part)
            given_val = len(parts.get("--val-data", Labelled()).texts)
            given_test = len(parts.get("--test-data", Labelled()).texts)
            if given_val:
                out.val = [False] * base + [True] * given_val + [False] * given_test
            if given_test:
                out.test = [False] * (base + given_val) + [True] * given_test
            return out

        return cached_corpus(cache_dir(data.cache_dir), "text", [path, *extra.values()], settings, read, limit)

    def in_domain_vectors(self, quiet: bool) -> tuple[str, str] | None:
        """--pretrain-text: word2vec over the user's unlabelled text (labelled sets are often too small to learn
        words from). Every word seen twice gets a vector: ranked on other text, a cut would miss the data's own."""
        text = given_path("--pretrain-text", self.config.data.pretrain_text)
        return in_domain_vectors(self.config, "text", {"text": str(text)}, quiet, described=str(text), max_vocab=0)


def given_path(flag: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise SeqtrainError(f"{flag} {path} does not exist")
    return path
