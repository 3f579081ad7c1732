"""Baselines that every classification run scores beside its model: the majority class, and TF-IDF
logistic regression on unigrams and bigrams.

Why these two: the majority class is the floor any classifier must clear (on
imbalanced data such as Reuters it is far above chance), and a linear model
on a bag of n-grams is the classic strong baseline for topic and sentiment
classification (Wang & Manning 2012: about 89-91% on IMDB), so a recurrent
model that does not beat it has not earned its cost. The logistic regression
is trained on the run's own training split, full-batch with L-BFGS on a sparse
TF-IDF matrix (torch sparse tensors): a few seconds on a CPU, with no
dependency beyond torch. Its L2 penalty is chosen from three values by
validation accuracy where there is a validation split, along a warm-started
path (strongest first), which costs little more than one fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from seqtrain.scores import Counts, count_sums, counts_from_sums, headline_scores
from seqtrain.sums import floats

PENALTIES = (3e-4, 3e-5, 3e-6)
FIRST_ITERATIONS, WARM_ITERATIONS = 60, 25  # L-BFGS iterations for the first penalty, and for each warm-started one
MIN_DOC_FREQ = 2  # an n-gram seen in one training text only cannot generalise


class NgramFeatures:
    """TF-IDF features (sublinear tf, smoothed idf, rows L2-normalised) of unigrams and bigrams of token ids,
    over the n-grams found in at least MIN_DOC_FREQ training texts."""

    def __init__(self, train: Sequence[torch.Tensor], vocab_size: int):
        self.vocab_size = vocab_size
        docs, keys, _ = self._pairs(train)
        features, doc_freq = torch.unique(keys, return_counts=True)
        keep = doc_freq >= MIN_DOC_FREQ
        self.keys = features[keep]
        self.idf = torch.log((1 + len(train)) / (1 + doc_freq[keep].double())).float() + 1

    def _pairs(self, texts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text index, n-gram key, count) for each distinct n-gram of each text."""
        v = self.vocab_size
        grams = []
        for ids in texts:
            ids = ids.long()
            grams.append(torch.cat([ids, v + ids[:-1] * v + ids[1:]]))
        lengths = torch.tensor([len(g) for g in grams])
        doc = torch.repeat_interleave(torch.arange(len(texts)), lengths)
        space = v + v * v
        pairs, counts = torch.unique(doc * space + torch.cat(grams), return_counts=True)
        return pairs // space, pairs % space, counts

    def transform(self, texts: Sequence[torch.Tensor]) -> torch.Tensor:
        """A sparse CSR matrix [texts, features]."""
        doc, key, count = self._pairs(texts)
        column = torch.searchsorted(self.keys, key).clamp(max=max(len(self.keys) - 1, 0))
        known = self.keys[column] == key if len(self.keys) else torch.zeros_like(key, dtype=torch.bool)
        doc, column, count = doc[known], column[known], count[known]
        values = (1 + torch.log(count.float())) * self.idf[column]
        norms = torch.zeros(len(texts)).index_add_(0, doc, values * values).sqrt().clamp(min=1e-12)
        values = values / norms[doc]
        shape = (len(texts), len(self.keys))
        matrix = torch.sparse_coo_tensor(torch.stack([doc, column]), values, shape, check_invariants=False)
        return to_csr(matrix)


def to_csr(matrix: torch.Tensor) -> torch.Tensor:
    """CSR (the fast layout for sparse @ dense on CPU), without torch's "beta" warning on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.coalesce().to_sparse_csr()


class LogisticRegression:
    """Softmax (one label per text) or one sigmoid per label (multi-label) over sparse features."""

    def __init__(self, features: int, classes: int, multi_label: bool):
        self.multi_label = multi_label
        self.weight = torch.zeros(features, classes)
        self.bias = torch.zeros(classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(x, self.weight) + self.bias

    def fit(self, x: torch.Tensor, targets: torch.Tensor, penalty: float, iterations: int = 60) -> LogisticRegression:
        """Minimise mean cross-entropy + penalty/2 * |W|^2 with L-BFGS; gradients by hand (X^T (P - Y))."""
        n = x.shape[0]
        xt = to_csr(x.to_sparse_coo().t())
        y = targets.float() if self.multi_label else torch.nn.functional.one_hot(targets, self.weight.shape[1]).float()
        params = [self.weight.requires_grad_(), self.bias.requires_grad_()]
        optimizer = torch.optim.LBFGS(params, lr=1, max_iter=iterations, history_size=10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            with torch.no_grad():
                z = self.logits(x)
                if self.multi_label:
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum") / n
                    residual = (torch.sigmoid(z) - y) / n
                else:
                    loss = -(torch.log_softmax(z, -1) * y).sum() / n
                    residual = (torch.softmax(z, -1) - y) / n
                loss = loss + penalty / 2 * (self.weight * self.weight).sum()
                self.weight.grad = torch.sparse.mm(xt, residual) + penalty * self.weight
                self.bias.grad = residual.sum(0)
            return loss

        optimizer.step(closure)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        return self

    def predict(self, x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        z = self.logits(x)
        return (torch.sigmoid(z) >= threshold).long() if self.multi_label else z.argmax(-1)


def score(predicted: torch.Tensor, targets: torch.Tensor, classes: int, multi_label: bool) -> dict[str, float]:
    """The run's headline scores (accuracy, macro-F1, micro-F1 for multi-label) of a baseline's predictions."""
    sums = floats(count_sums(predicted, targets, classes))
    counts: Counts = counts_from_sums(sums, classes, multi_label)
    exact = (predicted == targets).all(-1) if multi_label else predicted == targets
    return headline_scores(counts, float(exact.sum()), len(targets), multi_label)


def baselines(
    splits: dict[str, tuple[Sequence[torch.Tensor], torch.Tensor]],
    vocab_size: int,
    classes: int,
    multi_label: bool,
    threshold: float = 0.5,
) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {"majority": scores, "bow-logreg": scores}} for the splits other than "train".

    `splits` maps a split name to (token-id tensors, targets): class ids [N] or 0/1 labels [N, C].
    """
    train_x, train_y = splits["train"]
    if multi_label:  # each label predicted where most training texts carry it
        majority = (train_y.float().mean(0) > 0.5).long()
    else:
        majority = torch.bincount(train_y, minlength=classes).argmax()
    ngrams = NgramFeatures(train_x, vocab_size)
    x_train = ngrams.transform(train_x)
    held = {name: (ngrams.transform(xs), ys) for name, (xs, ys) in splits.items() if name != "train" and len(ys)}

    model = LogisticRegression(len(ngrams.keys), classes, multi_label)
    if "val" in held:
        # the penalties from strongest to weakest, each fit starting from the last (a warm-started path)
        x_val, y_val = held["val"]
        best, best_score = None, -1.0
        for step, penalty in enumerate(PENALTIES):
            model.fit(x_train, train_y, penalty, FIRST_ITERATIONS if step == 0 else WARM_ITERATIONS)
            accuracy = score(model.predict(x_val, threshold), y_val, classes, multi_label)["accuracy"]
            if accuracy > best_score:
                best, best_score = (model.weight.clone(), model.bias.clone()), accuracy
        model.weight, model.bias = best
    else:
        model.fit(x_train, train_y, PENALTIES[1], FIRST_ITERATIONS)
    out = {}
    for name, (x, y) in held.items():
        constant = majority.expand(len(y), *majority.shape) if multi_label else majority.expand(len(y))
        out[name] = {
            "majority": score(constant, y, classes, multi_label),
            "bow-logreg": score(model.predict(x, threshold), y, classes, multi_label),
        }
    return out
