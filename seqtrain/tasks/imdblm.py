"""A word language model over IMDB's own reviews, for pre-training the IMDB classifier (`--init-from`).

It reads what word2vec reads (train/pos, train/neg and the 50,000 unlabelled
train/unsup reviews; never a test review) through the same cached encoding,
with the classifiers' tokenizer (lower-cased, punctuation split, `it's` kept
whole), so the classifier's vocabulary is matched word by word. Reviews are
joined into one stream, each closed by `<eos>`, and trained like every word LM
here (truncated BPTT over contiguous columns, adaptive softmax). Every
HOLD_OUT-th review is held out for validation perplexity; there is no test
split (the classifier's test reviews stay unseen). The defaults give the shapes
of the IMDB classifier's default (a GRU of 96 over 128-dim embeddings), so
`seqtrain fit --task imdb --init-from RUN` fits without further flags.
"""

from __future__ import annotations

import torch

from seqtrain.data.streams import StreamLoader
from seqtrain.data.text import UNK, tokenize
from seqtrain.tasks.base import TaskData, register
from seqtrain.tasks.classification import rank_vocab
from seqtrain.tasks.language_modeling import EOS, WORD_DEFAULTS, LanguageModelMeta, LanguageModelTask
from seqtrain.tasks.word2vec import imdb_reviews

#: every HOLD_OUT-th review (the last of each run of HOLD_OUT) is validation text: 2%, 1,500 of 75,000 reviews
HOLD_OUT = 50


def review_stream(ids: torch.Tensor, offsets: torch.Tensor, keep: torch.Tensor, eos: int) -> torch.Tensor:
    """The kept reviews' ids (already over the vocabulary) in order, each followed by `eos`."""
    reviews = torch.split(ids, offsets.diff().tolist())
    end = torch.tensor([eos], dtype=ids.dtype)
    parts = [part for index in torch.nonzero(keep).squeeze(1).tolist() for part in (reviews[index], end)]
    return torch.cat(parts) if parts else ids[:0]


@register("imdblm")
class ImdbLMTask(LanguageModelTask):
    description = "Word LM on IMDB train + unsup reviews with the classifiers' tokenizer: pre-training for --init-from."
    level = "word"
    # The IMDB classifier's shapes (GRU 96, embeddings 128, one layer) so its --init-from fits as it is;
    # a vocabulary larger than the classifier's 20,000 so that its words, counted on fewer reviews, are all in it.
    defaults = {
        **WORD_DEFAULTS,
        "cell": "gru",
        "embed_dim": 128,
        "hidden": 96,
        "layers": 1,
        "dropout": 0.1,
        "batch_size": 32,
        "bptt": 70,
        "epochs": 1,
        "lr_schedule": "linear",
        "max_vocab": 30000,
    }
    summary_vocab = 30000

    def prepare(self, meta: LanguageModelMeta | None = None, quiet: bool = False) -> TaskData:
        blob = imdb_reviews(self.config, quiet)
        words, ids, offsets = blob["words"], blob["ids"].long(), blob["offsets"]
        reviews = len(offsets) - 1
        held = torch.arange(reviews) % HOLD_OUT == HOLD_OUT - 1
        if meta is None:
            in_train = torch.repeat_interleave(~held, offsets.diff())
            counts = torch.bincount(ids[in_train], minlength=len(words) + 1)
            counts[-1] = int((~held).sum())  # one <eos> per training review
            data = self.config.data
            meta = LanguageModelMeta(self.level, rank_vocab(words + [EOS], counts, data.max_vocab, data.min_freq, (UNK,)))
        self.meta = meta
        vocab = self.vocab_of(meta)
        remap = torch.tensor(vocab.encode(words), dtype=torch.long)
        mapped, eos = remap[ids], vocab.stoi.get(EOS, vocab.unk_index)
        train = StreamLoader(review_stream(mapped, offsets, ~held, eos), self.config.train.batch_size, self.config.train.bptt)
        return TaskData(train, self.eval_loader(review_stream(mapped, offsets, held, eos)), None, meta)

    def encode_prime(self, prime: str) -> list[int]:
        """A prime is tokenized as the reviews were (lower-cased, punctuation split)."""
        return super().encode_prime(" ".join(tokenize(prime)))
