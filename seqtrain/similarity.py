"""Exploring word vectors: nearest neighbours, analogies and a word-similarity score.

Everything works on cosine similarity, with unit-length rows computed once per vector set. An
analogy a : b :: c : ? ranks words by cos(w, b - a + c) over unit vectors and leaves out the three
inputs, as gensim's `most_similar(positive=[b, c], negative=[a])` does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import torch

from seqtrain.data.streams import text_lines
from seqtrain.data.vectors import WordVectors, resolve_vectors
from seqtrain.errors import SeqtrainError


def unit_rows(vectors: WordVectors) -> torch.Tensor:
    matrix = vectors.vectors.float()
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


class Explorer:
    """One vector set with its unit rows and word index, for repeated queries."""

    def __init__(self, vectors: WordVectors):
        self.vectors = vectors
        self.unit = unit_rows(vectors)
        self.index = vectors.index()

    def row(self, word: str) -> int:
        """The row of `word` (case-insensitive fallback); an unknown word is one line suggesting close spellings."""
        found = self.index.get(word)
        if found is None:
            found = self.index.get(word.lower())
        if found is None:
            close = suggestions(word, self.vectors.words)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SeqtrainError(f"'{word}' is not in the vectors ({len(self.vectors.words):,} words){hint}")
        return found

    def nearest_to(self, query: torch.Tensor, k: int, exclude: set[int]) -> list[tuple[str, float]]:
        scores = self.unit @ (query / query.norm().clamp_min(1e-12))
        if exclude:
            scores[list(exclude)] = -float("inf")
        top = torch.topk(scores, min(k, len(scores) - len(exclude)))
        return [(self.vectors.words[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        check_top_k(k)
        row = self.row(word)
        return self.nearest_to(self.unit[row], k, {row})

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """Words nearest to b - a + c: `analogy("man", "king", "woman")` should give queen."""
        check_top_k(k)
        rows = [self.row(w) for w in (a, b, c)]
        query = self.unit[rows[1]] - self.unit[rows[0]] + self.unit[rows[2]]
        return self.nearest_to(query, k, set(rows))


def explore(spec: str, cache: str | None = None, mirror: str | None = None) -> Explorer:
    """An Explorer over any vector source `resolve_vectors` reads (files, runs, glove.6B.<d>d)."""
    return Explorer(resolve_vectors(spec, cache, mirror))


def nearest(vectors: WordVectors, word: str, k: int = 10) -> list[tuple[str, float]]:
    return Explorer(vectors).similar(word, k)


def check_top_k(k: int) -> None:
    if k < 1:
        raise SeqtrainError(f"--top-k must be at least 1, not {k}")


def suggestions(word: str, words: list[str], n: int = 3) -> list[str]:
    """Close spellings of `word` among `words`; only words of a similar length are compared, so it is quick."""
    size = len(word)
    pool = [w for w in words if abs(len(w) - size) <= 2]
    return difflib.get_close_matches(word.lower(), pool, n=n, cutoff=0.75)


def format_neighbours(neighbours: dict[str, list[tuple[str, float]]]) -> str:
    """A markdown table (TensorBoard renders text as markdown): probe word, then its neighbours with cosines."""
    lines = ["| word | nearest neighbours (cosine) |", "|---|---|"]
    for word, found in neighbours.items():
        lines.append(f"| {word} | " + ", ".join(f"{w} ({s:.2f})" for w, s in found) + " |")
    return "\n".join(lines)


def read_similarity_pairs(path: Path) -> list[tuple[str, str, float]]:
    """Rows of 'word1<TAB>word2<TAB>score' (spaces work too); '#' comment lines and a header row are skipped."""
    if not path.is_file():
        raise SeqtrainError(f"--similarity-pairs {path} does not exist (a 'word1<TAB>word2<TAB>score' file)")
    pairs = []
    for number, line in enumerate(text_lines(path.read_text(encoding="utf-8", errors="replace")), start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or line.startswith("#"):
            continue
        try:
            pairs.append((parts[0].strip().lower(), parts[1].strip().lower(), float(parts[2])))
        except (IndexError, ValueError):
            if pairs:  # only a first row may be a header
                raise SeqtrainError(f"{path}: line {number} is not 'word1<TAB>word2<TAB>score'") from None
    if not pairs:
        raise SeqtrainError(f"{path} holds no 'word1<TAB>word2<TAB>score' rows")
    return pairs


@dataclass
class SimilarityScore:
    spearman: float  # rank correlation of cosine similarity with the human scores, over covered pairs
    covered: int  # pairs whose two words both have vectors


def similarity_score(vectors: WordVectors, pairs: list[tuple[str, str, float]]) -> SimilarityScore:
    """Spearman correlation between the vectors' cosine similarities and the pairs' scores."""
    explorer = Explorer(vectors)
    model, human = [], []
    for a, b, score in pairs:
        if a in explorer.index and b in explorer.index:
            model.append(float(explorer.unit[explorer.index[a]] @ explorer.unit[explorer.index[b]]))
            human.append(score)
    if len(model) < 2:
        return SimilarityScore(float("nan"), len(model))
    return SimilarityScore(spearman(model, human), len(model))


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation with average ranks for ties (what scipy.stats.spearmanr computes)."""
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.norm() * ry.norm()).item()
    return float((rx @ ry).item() / denominator) if denominator else float("nan")


def _ranks(values: list[float]) -> torch.Tensor:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = torch.zeros(len(values), dtype=torch.float64)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks
