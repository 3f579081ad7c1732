"""Corpus BLEU (Papineni et al. 2002) computed the way sacreBLEU computes it.

BLEU is a function of additive statistics (clipped n-gram matches and n-gram
totals for n = 1..4, hypothesis and reference lengths), so a trainer can sum
`bleu_stats` over batches and call `bleu_from_stats` once at the end: the
result is corpus BLEU, not an average of sentence scores. Smoothing is
sacreBLEU's default 'exp' and the brevity penalty uses the closest reference
length; tokenization is the caller's choice (tests check the figures against
sacreBLEU's published example and, when installed, sacreBLEU itself).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

ORDER = 4
#: names of the additive statistics, in the order `bleu_stats` returns them
STAT_NAMES = tuple(f"bleu_match{n}" for n in range(1, ORDER + 1)) + tuple(
    f"bleu_total{n}" for n in range(1, ORDER + 1)
) + ("bleu_hyp_len", "bleu_ref_len")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu_stats(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> list[int]:
    """Clipped matches and totals per n-gram order, hypothesis length, closest reference length."""
    hyp_len = len(hypothesis)
    ref_len = min((abs(len(r) - hyp_len), len(r)) for r in references)[1]
    matches, totals = [], []
    for n in range(1, ORDER + 1):
        counts = _ngrams(hypothesis, n)
        best: Counter = Counter()
        for reference in references:
            best |= _ngrams(reference, n)
        matches.append(sum(min(c, best[g]) for g, c in counts.items()))
        totals.append(max(hyp_len - n + 1, 0))
    return matches + totals + [hyp_len, ref_len]


def bleu_from_stats(stats: Sequence[float]) -> float:
    """BLEU in [0, 100] from summed `bleu_stats`."""
    matches, totals = stats[:ORDER], stats[ORDER : 2 * ORDER]
    hyp_len, ref_len = stats[2 * ORDER], stats[2 * ORDER + 1]
    if not any(matches):
        return 0.0
    precisions = [0.0] * ORDER
    smooth = 1.0
    for n in range(ORDER):
        if totals[n] == 0:
            break
        if matches[n] == 0:
            smooth *= 2
            precisions[n] = 100.0 / (smooth * totals[n])
        else:
            precisions[n] = 100.0 * matches[n] / totals[n]
    brevity = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0)
    log_mean = sum(math.log(p) if p > 0 else -9999999999 for p in precisions) / ORDER
    return brevity * math.exp(log_mean)


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> float:
    """BLEU of tokenized hypotheses against one or more tokenized references each."""
    totals = [0] * len(STAT_NAMES)
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        totals = [a + b for a, b in zip(totals, bleu_stats(hypothesis, refs))]
    return bleu_from_stats(totals)
