"""Text classification of a user's own labelled texts (`--task text --data PATH`)."""

from __future__ import annotations

from typing import Any, ClassVar

from seqtrain.config import ClassifierModel, Schema, TextData, TrainSettings
from seqtrain.data.download import cache_dir
from seqtrain.data.labelled import read_labelled
from seqtrain.data.sources import local_source
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.base import register
from seqtrain.tasks.classification import TextClassificationTask, cached_corpus, text_bytes
from seqtrain.tasks.imdb import ImdbTask


@register("text")
class TextTask(TextClassificationTask):
    description = (
        "Your own labelled texts: class folders, or a CSV/TSV/JSON Lines file; one label or several per text."
    )
    schema: ClassVar[Schema] = Schema(TrainSettings, ClassifierModel, TextData)
    defaults = ImdbTask.defaults  # the recipe measured on IMDB, a sound start for any text

    def validate(self) -> None:
        super().validate()
        data = self.config.data
        if data.val_split + data.test_split >= 1:
            raise SeqtrainError(f"--val-split {data.val_split} and --test-split {data.test_split} leave no training data")

    def load_corpus(self, quiet: bool) -> dict[str, Any]:
        data = self.config.data
        path = local_source(data)
        if path is None:  # checked here, not in validate(), so that `seqtrain summary --task text` needs no data
            raise SeqtrainError(
                "--task text needs --data PATH: a folder of class folders (PATH/<label>/*.txt), "
                "or a .csv, .tsv or .jsonl file with text and label columns"
            )
        settings = (data.text_col, data.label_col, data.label_sep, data.encoding)
        limit = data.max_text_tokens
        return cached_corpus(
            cache_dir(data.cache_dir), "text", [path], settings,
            lambda: read_labelled(
                path, data.text_col, data.label_col, data.label_sep, data.encoding, max_bytes=text_bytes(limit)
            ), limit,
        )
