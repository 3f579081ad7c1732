"""Export adapter for sequence taggers: tokens' word, casing and character ids in, per-token emission scores out.

Decoding stays with the caller: the CRF's Viterbi walks back over a
sentence's own length, which a traced graph would fix at the traced
sentence's length, so the sidecar carries the CRF's start, transition and end
scores (the tag scheme's forbidden moves already at their fixed score) and
docs/examples/tag_onnx.py decodes them in a dozen lines of numpy. The export
checks the emissions and the tags decoded from them against PyTorch's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqtrain.data.conll import _TOKEN, SpanCounts, prf
from seqtrain.errors import SeqtrainError
from seqtrain.export.core import Export, Graph, Runner, as_arrays, exporter, sample_batches
from seqtrain.export.families import BATCH
from seqtrain.inference import Trained
from seqtrain.models.crf import FORBIDDEN
from seqtrain.models.tagger import CASINGS
from seqtrain.tasks.tagging import MAX_WORD_CHARS, TagBatch, TaggingTask


class Emissions(nn.Module):
    """words, casings [B, T] (right-padded with 0), chars [B, T, C] (only where the model reads characters),
    lengths [B] -> emission scores [B, T, tags]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, words: torch.Tensor, casings: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        chars, lengths = rest if len(rest) == 2 else (None, rest[0])
        return self.model(words, casings, chars, lengths)


@exporter(TaggingTask)
def tagger(trained: Trained, loader: Any) -> Export:
    model, meta = trained.model, trained.task.meta
    reads_chars = model.chars is not None
    module = Emissions(model).eval()

    def feed(batch: TagBatch) -> tuple[torch.Tensor, ...]:
        return (batch.words, batch.casings, *([batch.chars] if reads_chars else []), batch.lengths)

    samples = [feed(batch) for batch in sample_batches(loader)]
    sentence = {0: "batch", 1: "steps"}
    graph = Graph(
        "tagger", module, ["words", "casings", *(["chars"] if reads_chars else []), "lengths"], ["emissions"],
        {"words": sentence, "casings": sentence, "lengths": BATCH, "emissions": sentence}
        | ({"chars": {0: "batch", 1: "steps", 2: "chars"}} if reads_chars else {}),
        samples,
    )

    def decoded_tags(runners: dict[str, Runner]) -> dict[str, Any]:
        """The tags decoded from the written graph's emissions equal those decoded from PyTorch's, token for token."""
        tokens = 0
        for sample in samples:
            lengths = sample[-1]
            written = torch.from_numpy(runners["tagger"](as_arrays(sample))[0])
            with torch.no_grad():
                got, expected = model.decode(written, lengths), model.decode(module(*sample), lengths)
            wrong = int((got != expected).sum())
            if wrong:
                raise SeqtrainError(
                    f"parity check failed: {wrong} of {int(lengths.sum())} tags decoded from the exported emissions "
                    f"differ from PyTorch's on a test batch of shape {tuple(sample[0].shape)}; the export is not usable"
                )
            tokens += int(lengths.sum())
        return {"tags_checked": tokens}

    plain = meta.train_scheme == "plain"

    def score(runners: dict[str, Runner]) -> tuple[str, float, str]:
        """Span F1 (conlleval's) of the decoded tags, or token accuracy for plain tags, on the test split."""
        counts, correct, total = SpanCounts(), 0, 0
        for batch in loader:
            emissions = torch.from_numpy(runners["tagger"](as_arrays(feed(batch)))[0])
            predicted = model.decode(emissions, batch.lengths)
            for row, length in enumerate(batch.lengths.tolist()):
                gold, guess = batch.tags[row, :length].tolist(), predicted[row, :length].tolist()
                correct, total = correct + sum(g == p for g, p in zip(gold, guess)), total + length
                counts.add([meta.tags[i] for i in gold], [meta.tags[i] for i in guess])
        if plain:
            return "accuracy", correct / max(total, 1), "max"
        return "f1", prf(sum(counts.correct.values()), sum(counts.predicted.values()), sum(counts.gold.values()))["f1"], "max"

    crf = None
    if model.crf is not None:
        start, moves, end = (t.tolist() for t in model.crf.scores())
        crf = {"start": start, "transitions": moves, "end": end, "forbidden": FORBIDDEN,
               "rule": "transitions[i][j] scores tag i followed by tag j; a move the tag scheme forbids scores `forbidden`"}
    sidecar = {
        "family": "tagger",
        "tokenizer": {"rule": "conll", "steps": "every match of token_pattern, case kept (or give the tokens yourself)",
                      "token_pattern": _TOKEN.pattern},
        "vocab": meta.vocab,
        "pad_id": 0,
        "unk_id": 1,
        "word_rule": "words: the id of the token lower-cased with every digit (\\d) replaced by 0; unknown: unk_id",
        "casings": list(CASINGS),
        "casing_rule": "casings: the first that holds: all digits (str.isdigit) -> digits; any digit -> has-digit; "
        "str.islower -> lower; str.isupper -> upper; first character upper and the rest lower -> title; else other",
        "chars": meta.chars if reads_chars else None,
        "max_word_chars": MAX_WORD_CHARS,
        "char_rule": "chars: each character's id (unknown: unk_id); a word longer than max_word_chars keeps its first "
        "and last max_word_chars / 2 characters; right-padded with 0 to the batch's longest word",
        "tags": meta.tags,
        "tag_scheme": meta.train_scheme,
        "data_scheme": meta.scheme,
        "crf": crf,
        "decoding": "with a crf: Viterbi over a sentence's first `length` emission rows, start + transitions + end "
        "scores added (docs/examples/tag_onnx.py); without: each token's highest-scoring tag. Tags come in tag_scheme; "
        "seqtrain tag writes them back in data_scheme through their entities",
    }
    return Export([graph], sidecar, score, decoded_tags)
