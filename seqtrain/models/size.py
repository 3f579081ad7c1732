"""The memory a model's parameters will take, estimated from its settings before anything is built.

An oversized --hidden or --embed-dim would otherwise reach the allocator and
fail there with a traceback (or take the machine's memory); this estimate is
a lower bound (the recurrent layers alone, whose first takes --embed-dim
inputs), so it refuses only models that cannot fit.
"""

from __future__ import annotations

import os

from seqtrain.errors import SeqtrainError

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
#: bytes per parameter while training: float32 weights, their gradients and two optimizer moments (Adam)
TRAINING_BYTES = 16


def parameter_count(config) -> int:
    """At least how many parameters the recurrent layers of `config` hold (read with getattr: every task family)."""
    model = config.model
    hidden = getattr(model, "hidden", 0)
    if not hidden:  # not a recurrent model (word2vec)
        return 0
    directions = 2 if getattr(model, "bidirectional", False) else 1
    width = getattr(model, "embed_dim", 0) or 1
    count = 0
    for _ in range(model.layers):
        count += directions * GATES[model.cell] * hidden * (width + hidden + 2)
        width = hidden * directions
    return count


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_model_size(config) -> None:
    """Refuse, in one line with the figure, a model whose training state cannot fit in this machine's memory."""
    count = parameter_count(config)
    need, have = count * TRAINING_BYTES, physical_memory()
    if have and need > have:
        raise SeqtrainError(
            f"--hidden {config.model.hidden:,} and --embed-dim {getattr(config.model, 'embed_dim', 0):,} make a model of "
            f"at least {count:,} parameters, {need / 2**30:,.1f} GiB to train (weights, gradients, optimizer state), "
            f"more than this machine's {have / 2**30:,.1f} GiB: choose smaller sizes"
        )
