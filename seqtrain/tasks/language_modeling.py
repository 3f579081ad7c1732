"""Language models, character- and word-level, trained with truncated BPTT over one long stream.

- shakespeare: characters of tiny Shakespeare (karpathy/char-rnn), downloaded and verified.
- charlm: characters of any UTF-8 text the user brings (--text FILE or folder).
- wikitext2: words of WikiText-2 as in pytorch/examples word_language_model (`<eos>` per line).
- wordlm: words of any UTF-8 text (--text), the same way.

A single text is split contiguously 90/5/5 into train/validation/test. The
trainer carries the hidden state from chunk to chunk and detaches it; it
resets it at the start of each pass, so validation reads its whole stream
with carried state too. Loss is in nats per token; char models add bits per
character, all add perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from seqtrain.config import LanguageModelData, LanguageModelModel, LanguageModelTrain, OwnTextData, Schema
from seqtrain.data.download import cache_dir, download
from seqtrain.data.sources import local_source
from seqtrain.data.streams import StreamLoader, read_text, split_stream, text_lines
from seqtrain.data.text import UNK, Vocab
from seqtrain.errors import SeqtrainError
from seqtrain.generation import check_sampling, sample
from seqtrain.models.language_model import LanguageModel, parse_cutoffs
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register

EOS = "<eos>"
#: columns of the validation/test streams: few, so little text is read from a cold state (as pytorch/examples)
EVAL_BATCH = 10
#: temperatures of the text samples written to TensorBoard after each epoch
SAMPLE_TEMPERATURES = (0.5, 1.0)

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
WIKITEXT_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/{}.txt"
# valid and test are the published files byte for byte; train is checked for its shape instead
WIKITEXT_SHA256 = {
    "train": None,
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}

CHAR_DEFAULTS = {
    "cell": "lstm",
    "embed_dim": 64,
    "hidden": 512,
    "layers": 1,
    "dropout": 0.1,
    # 32 columns and a cosine decay from 3e-3: on tiny Shakespeare 1.403 validation after 8 epochs, where
    # char-rnn's 64 columns at a constant 2e-3 reached 1.427 (twice the updates per character read)
    "batch_size": 32,
    "bptt": 100,
    "lr": 3e-3,
    "lr_schedule": "cosine",
    "clip": 5.0,
    "epochs": 8,
}
WORD_DEFAULTS = {
    "cell": "lstm",
    "embed_dim": 200,
    "hidden": 200,
    "layers": 2,
    "dropout": 0.2,
    "batch_size": 20,
    "bptt": 35,
    "lr": 2e-3,
    "clip": 0.25,
    "epochs": 6,
    "output": "adaptive",
}


def word_tokens(text: str) -> list[str]:
    """Whitespace-separated words with `<eos>` closing every line (pytorch/examples' Corpus.tokenize)."""
    tokens: list[str] = []
    for line in text_lines(text):
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


@dataclass
class LanguageModelMeta(Meta):
    level: str  # "char" or "word"
    vocab: list[str]


class LanguageModelTask(Task):
    """Shared by all LM tasks; subclasses choose the `level` and where the text comes from."""

    schema: ClassVar[Schema] = Schema(LanguageModelTrain, LanguageModelModel, LanguageModelData)
    meta_type = LanguageModelMeta
    level: ClassVar[str] = "char"
    monitor = "loss"
    monitor_mode = "min"
    metric_names = ("loss", "ppl")
    unit = "tok"
    ability = "generate"
    defaults = CHAR_DEFAULTS

    @property
    def headline(self) -> str:  # type: ignore[override]
        return "bpc" if self.level == "char" else "ppl"

    # ------------------------------------------------------------------ data
    def texts(self, quiet: bool) -> str | tuple[str, str, str]:
        """One text (split 90/5/5 here) or the three splits' texts."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else word_tokens(text)

    def validate(self) -> None:
        if self.config.model.output == "adaptive":
            parse_cutoffs(self.config.model.cutoffs)  # the range needs the vocabulary: checked when the model is built

    def prepare(self, meta: LanguageModelMeta | None = None, quiet: bool = False) -> TaskData:
        texts = self.texts(quiet)
        if isinstance(texts, str):
            splits = list(split_stream(self.tokenize(texts)))
        else:
            splits = [self.tokenize(t) for t in texts]
        if meta is None:
            meta = LanguageModelMeta(self.level, self.build_vocab(splits))
        self.meta = meta
        vocab = self.vocab_of(meta)
        ids = [self.encode(vocab, tokens) for tokens in splits]
        train = StreamLoader(ids[0], self.config.train.batch_size, self.config.train.bptt)
        return TaskData(train, self.eval_loader(ids[1]), self.eval_loader(ids[2]), meta)

    def build_vocab(self, splits: list[list[str]]) -> list[str]:
        if self.level == "char":
            # every character of the text (a few may occur only in validation), most frequent first
            return Vocab.build(splits, specials=()).itos
        data = self.config.data
        return Vocab.build([splits[0]], data.max_vocab, data.min_freq, specials=(UNK,)).itos

    @staticmethod
    def vocab_of(meta: LanguageModelMeta) -> Vocab:
        return Vocab(meta.vocab, specials=() if meta.level == "char" else (UNK,))

    def encode(self, vocab: Vocab, tokens: list[str]) -> torch.Tensor:
        if vocab.unk_index < 0:
            unknown = sorted({t for t in tokens if t not in vocab})
            if unknown:
                shown = "".join(unknown[:20])
                raise SeqtrainError(f"characters the model never saw: {shown!r}; use text in its alphabet")
        return torch.tensor(vocab.encode(tokens), dtype=torch.long)

    def eval_loader(self, ids: torch.Tensor) -> StreamLoader | None:
        batch = min(EVAL_BATCH, len(ids) // 2)
        return StreamLoader(ids, batch, self.config.train.bptt) if batch >= 1 else None

    # ----------------------------------------------------------------- model
    def build_model(self, meta: LanguageModelMeta) -> nn.Module:
        return LanguageModel(len(meta.vocab), self.config.model)

    #: vocabulary size of an untrained model for `seqtrain summary` (with no --max-vocab to go by)
    summary_vocab = 65

    def default_meta(self) -> LanguageModelMeta:
        size = self.summary_vocab if self.level == "char" else self.config.data.max_vocab or self.summary_vocab
        return LanguageModelMeta(self.level, [f"t{i}" for i in range(size)])

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], state: Any, ctx: StepContext) -> StepResult:
        inputs, targets = batch
        loss, state = model(inputs, state, targets=targets)
        count = targets.numel()
        return StepResult(loss, count, {"loss": loss.detach() * count}, state)

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        loss = sums.get("loss", 0.0) / max(count, 1)
        result = {"loss": loss, "ppl": math.exp(min(loss, 50.0))}
        if self.level == "char":
            result["bpc"] = loss / math.log(2)
        return result

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """The uniform baseline: guessing every token of the vocabulary alike."""
        return {"all": {"uniform": self.metrics({"loss": math.log(len(data.meta.vocab))}, 1)}}

    # ------------------------------------------------------------ generation
    def generate(
        self, model: nn.Module, prime: str, length: int, temperature: float = 1.0, top_k: int | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The prime as printed, then `length` sampled tokens as text, one at a time (for streaming)."""
        check_sampling(temperature, top_k, len(self.meta.vocab))
        ids = self.encode_prime(prime)
        yield self.render_prime(prime)
        for token in sample(model, ids, length, temperature, top_k, seed):
            yield self.render(token)

    def encode_prime(self, prime: str) -> list[int]:
        """Token ids of the prime; an empty prime starts after a line break."""
        vocab = self.vocab_of(self.meta)
        if self.meta.level == "char":
            tokens = list(prime) or (["\n"] if "\n" in vocab else [vocab.itos[0]])
            return self.encode(vocab, tokens).tolist()
        return vocab.encode(prime.split() or [EOS if EOS in vocab else vocab.itos[0]])

    def render_prime(self, prime: str) -> str:
        """The prime as printed before the sampled text: word primes get the space that separates the next word."""
        return prime + " " if self.meta.level == "word" and prime and not prime[-1].isspace() else prime

    def render(self, token: int) -> str:
        """How one token prints: characters as they are, words followed by a space, `<eos>` as a line break."""
        text = self.meta.vocab[token]
        if self.meta.level == "char":
            return text
        return "\n" if text == EOS else text + " "

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        length = 400 if self.level == "char" else 120
        for temperature in SAMPLE_TEMPERATURES:
            text = "".join(self.generate(model, "", length, temperature, seed=epoch))
            # four-space indent: TensorBoard renders text as markdown; this keeps line breaks verbatim
            log.text(f"sample/temperature_{temperature}", "    " + text.replace("\n", "\n    "), epoch)


@register("shakespeare")
class ShakespeareTask(LanguageModelTask):
    description = "Character LM on tiny Shakespeare (1.1M chars, 90/5/5 contiguous split), truncated BPTT."

    def texts(self, quiet: bool) -> str:
        given = local_source(self.config.data)
        if given is not None:
            return read_text(given / "input.txt" if given.is_dir() else given)
        data = self.config.data
        path = download(SHAKESPEARE_URL, SHAKESPEARE_SHA256, cache_dir(data.cache_dir), data.mirror, "tinyshakespeare.txt", quiet)
        return read_text(path)


@register("charlm")
class CharLMTask(LanguageModelTask):
    description = "Character LM on your own UTF-8 text: --text FILE or a folder of .txt files."
    schema = Schema(LanguageModelTrain, LanguageModelModel, OwnTextData)

    def validate(self) -> None:
        super().validate()
        data = self.config.data
        if not (data.text or data.data or data.data_dir):
            raise SeqtrainError(f"--task {self.name} needs --text FILE (a UTF-8 text file or a folder of .txt files)")

    def texts(self, quiet: bool) -> str:
        return read_text(local_source(self.config.data))


@register("wordlm")
class WordLMTask(CharLMTask):
    description = "Word LM on your own UTF-8 text (--text), whitespace words with <eos> per line."
    level = "word"
    defaults = WORD_DEFAULTS
    summary_vocab = 10000


@register("wikitext2")
class WikiText2Task(LanguageModelTask):
    description = "Word LM on WikiText-2 (2M tokens, 33k words), as pytorch/examples word_language_model."
    level = "word"
    # 64 columns, Adam 3e-3 decayed along a cosine over 11 epochs: test perplexity 141.5 on this corpus in about
    # 50 minutes of one CPU core (pytorch/examples' 2x200 LSTM: about 115 after 12 epochs of SGD at batch 20)
    defaults = {**WORD_DEFAULTS, "max_vocab": 0, "batch_size": 64, "lr": 3e-3, "lr_schedule": "cosine", "epochs": 11}
    summary_vocab = 33278

    def texts(self, quiet: bool) -> tuple[str, str, str]:
        return tuple(self.split_text(split, quiet) for split in ("train", "valid", "test"))

    def split_text(self, split: str, quiet: bool) -> str:
        """From --data (a folder with `<split>.txt` or `.txt.gz`), else downloaded into the cache."""
        data = self.config.data
        folder = local_source(data)
        if folder is not None:
            for name in (f"{split}.txt", f"{split}.txt.gz"):
                if (folder / name).is_file():
                    return read_text(folder / name)
            raise SeqtrainError(f"--data {folder} has no {split}.txt or {split}.txt.gz (WikiText-2 tokenized files)")
        path = download(WIKITEXT_URL.format(split), WIKITEXT_SHA256[split], cache_dir(data.cache_dir), data.mirror,
                        f"wikitext-2-{split}.txt", quiet)
        text = read_text(path)
        if split == "train" and text.count("\n") < 30000:  # no published checksum: check its shape
            path.unlink()
            raise SeqtrainError(f"{path} is not WikiText-2's training split (too few lines); check --mirror")
        return text
