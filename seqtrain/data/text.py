"""Word tokenization and the vocabulary that maps tokens to ids."""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable
from itertools import islice

import numpy as np
import torch

PAD, UNK = "<pad>", "<unk>"

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_", re.UNICODE)


def tokenize(text: str, limit: int = 0) -> list[str]:
    """Lower-cased words (contractions kept whole) and single punctuation marks; HTML line breaks dropped.

    With `limit`, the first `limit` tokens only, found one at a time, so a huge text never becomes a list
    of all its tokens.
    """
    text = _BREAK.sub(" ", text).lower()
    if not limit or len(text) <= limit:  # a text has at most one token per character
        return _TOKEN.findall(text)
    return [match.group() for match in islice(_TOKEN.finditer(text), limit)]


#: bump when tokenize() changes: every cache of encoded text is keyed on it
TOKENIZER_VERSION = 1


def encode_texts(
    texts: Iterable[str], skip_empty: bool = False, max_tokens: int = 0, cut: list[int] | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Tokenize each text once into ids over one word list, in first-seen order (a run cuts its own
    vocabulary from these later): (words, ids int32, offsets where each text starts, and the end).

    With `skip_empty`, texts without a token get no entry; else they get an empty one. With `max_tokens`,
    a text keeps its first `max_tokens` tokens, and the positions of the texts cut are added to `cut`.
    Ids are kept 4 bytes each while they accumulate (a list of Python ints takes 9 times that).
    """
    word_ids: dict[str, int] = {}
    ids = array("i")
    offsets = array("q", [0])
    for index, text in enumerate(texts):
        tokens = tokenize(text, max_tokens + 1 if max_tokens else 0)
        if max_tokens and len(tokens) > max_tokens:
            del tokens[max_tokens:]
            if cut is not None:
                cut.append(index)
        if tokens or not skip_empty:
            ids.extend(word_ids.setdefault(token, len(word_ids)) for token in tokens)
            offsets.append(len(ids))
    return list(word_ids), _tensor(ids, torch.int32), _tensor(offsets, torch.long)


def _tensor(values: array, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(values, dtype=values.typecode).copy()).to(dtype)


class Vocab:
    """Token <-> id mapping with padding at 0 and unknown at 1 (when `specials` is the default)."""

    def __init__(self, itos: list[str], specials: tuple[str, ...] = (PAD, UNK)):
        self.itos = list(itos)
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        self.specials = specials
        self.unk_index = self.stoi.get(UNK, -1)

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        max_size: int | None = None,
        min_freq: int = 1,
        specials: tuple[str, ...] = (PAD, UNK),
    ) -> Vocab:
        """Most frequent tokens first (ties alphabetical, so the result is deterministic)."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for special in specials:
            counts.pop(special, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size:
            ranked = ranked[: max(max_size - len(specials), 0)]
        return cls(list(specials) + ranked, specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        if self.unk_index < 0:
            return [self.stoi[t] for t in tokens]
        return [self.stoi.get(t, self.unk_index) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]
