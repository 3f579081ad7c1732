"""Characters per second: stateful generation (what `seqtrain generate` does) against prefix re-feeding.

The re-feeding sampler is how the Keras text-generation lecture code samples:
a stateless model reads the text again for every new character, either the
whole prefix or the last `--window` characters (Keras' `maxlen`, 60 there).
Stateful generation reads the prime once and then one character per step.

    python scripts/bench_generate.py                       # a fresh model of the shakespeare task's size
    python scripts/bench_generate.py --checkpoint runs/latest/best.pt --lengths 200 1000 5000

It also measures the floor: the model's own one-step path (the embedding
row, one cell step per layer, the output projection) in a bare loop with no
sampling, and prints how close stateful generation comes to it; and, as a
reference, the previous generation loop (weights looked up per token,
torch.multinomial), kept only here.

Speed does not depend on the weights, so a fresh model measures the same as a
trained one of its shape. The whole-prefix sampler is quadratic; it stops after
`--max-seconds` per length and reports the rate over what it produced, which
only overstates its speed (later characters cost more).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from seqtrain.generation import TokenSampler, sample
from seqtrain.inference import load_trained
from seqtrain.tasks import build_config, make_task
from seqtrain.training.runs import resolve_checkpoint
from seqtrain_cli.main import stream


def timed(work, count: int) -> tuple[float, float]:
    """(count per wall-clock second, count per CPU second of this thread) over one call of `work`.

    With other jobs on the cores, wall-clock rates swing with their load; the
    thread's CPU time leaves out the time the scheduler gave to them.
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    work()
    return count / (time.perf_counter() - wall), count / (time.thread_time() - cpu)


def generate(model, prime: list[int], length: int) -> None:
    """Stateful generation, as `seqtrain generate` samples."""
    for _ in sample(model, prime, length, temperature=0.5, seed=0):
        pass


def stateful_rate(model, prime: list[int], length: int, repeats: int = 3) -> float:
    """Best of a few runs: cheap to repeat, and the best is the least disturbed by other jobs."""
    return max(timed(lambda: generate(model, prime, length), length)[0] for _ in range(repeats))


def command(task, model, length: int) -> None:
    """What `seqtrain generate` runs after loading: the task's text pieces, streamed (to /dev/null here)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        stream(task.generate(model, "", length, temperature=0.5, seed=0))


@torch.inference_mode()
def floor_steps(model, steps: int) -> None:
    """The bare per-token work: the model's one-step path (embedding row, cells, output layer), nothing else."""
    model.eval()
    token = torch.zeros(1, dtype=torch.long)
    _, state = model(token[:, None])
    step = model.stepper()
    for _ in range(steps):
        _, state = step(token, state)


@torch.inference_mode()
def previous_generation(model, prime: list[int], length: int) -> None:
    """Stateful generation as `seqtrain generate` ran it before `LanguageModel.stepper` and `TokenSampler`, kept here as
    the reference: per token, each layer's weights looked up by name, the embedding and output modules called, and
    torch.multinomial (with its checks) on the softmax. Full-softmax nn.RNN/LSTM/GRU models only."""
    generator = torch.Generator().manual_seed(0)
    rnn, lstm = model.rnn, model.rnn.mode == "LSTM"
    cell = {"LSTM": torch.lstm_cell, "GRU": torch.gru_cell, "RNN_TANH": torch.rnn_tanh_cell, "RNN_RELU": torch.rnn_relu_cell}[rnn.mode]
    scores, state = model(torch.tensor([prime]))
    scores = scores[0, -1]
    fed = torch.empty(1, dtype=torch.long)
    for _ in range(length):
        token = int(torch.multinomial(torch.softmax(scores.float().cpu() / 0.5, dim=-1), 1, generator=generator))
        x = model.embedding(fed.fill_(token))
        hs, cs = state if lstm else (state, None)
        finals_h, finals_c = [], []
        for layer in range(rnn.num_layers):
            weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm:
                x, c = cell(x, (hs[layer], cs[layer]), *weights)
                finals_c.append(c)
            else:
                x = cell(x, hs[layer], *weights)
            finals_h.append(x)
        state = (torch.stack(finals_h), torch.stack(finals_c)) if lstm else torch.stack(finals_h)
        scores = model.scores(x)[0]


@torch.inference_mode()
def sequence_kernel_generation(model, prime: list[int], length: int) -> None:
    """Stateful generation that feeds each token through the model's sequence kernel (`model(token, state)`),
    as `seqtrain generate` did before the one-step path: the same tokens, more set-up per token."""
    draw = TokenSampler(model.vocab_size, 0.5, None, torch.Generator().manual_seed(0))
    scores, state = model(torch.tensor([prime]))
    for _ in range(length):
        token = draw(scores[0, -1])
        scores, state = model(torch.tensor([[token]]), state)


def block_rates(model, prime: list[int], length: int, blocks: int = 10) -> list[float]:
    """Stateful characters per second over each tenth of one long generation: flat if a token costs O(1)."""
    size = max(length // blocks, 1)
    marks = [time.perf_counter()]
    for index, _ in enumerate(sample(model, prime, size * blocks, temperature=0.5, seed=0)):
        if (index + 1) % size == 0:
            marks.append(time.perf_counter())
    return [size / (b - a) for a, b in zip(marks, marks[1:])]


@torch.no_grad()
def refeed_rate(model, prime: list[int], length: int, window: int, max_seconds: float) -> tuple[float, bool]:
    """(characters per second, finished) of a sampler that re-reads the text for every character."""
    draw = TokenSampler(model.vocab_size, 0.5, None, torch.Generator().manual_seed(0))
    text = list(prime)
    started = time.perf_counter()
    for produced in range(1, length + 1):
        context = text[-window:] if window else text
        logits, _ = model(torch.tensor([context]))
        text.append(draw(logits[0, -1]))
        elapsed = time.perf_counter() - started
        if elapsed > max_seconds:
            return produced / elapsed, False
    return length / (time.perf_counter() - started), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a language-model checkpoint or run (runs/latest works); default: a fresh shakespeare-sized model")
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--window", type=int, default=60, help="Keras' maxlen for the windowed re-feeding sampler")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="cap per length for the whole-prefix sampler")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the floor and the four generation paths")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.checkpoint:
        trained = load_trained(resolve_checkpoint(args.checkpoint), "cpu")
        task, model = trained.task, trained.model
    else:
        task = make_task(build_config("shakespeare"))
        model = task.build_model(task.default_meta()).eval()
        task.meta = task.default_meta()
    m, vocab = task.config.model, task.meta.vocab
    print(f"model: {m.layers}x{m.hidden} {m.cell}, vocabulary {len(vocab)}, {args.threads} thread(s), CPU")
    prime = list(range(min(6, len(vocab))))  # a 6-character prime, like "ROMEO:"

    runs = {
        "floor": lambda: floor_steps(model, 2000),
        "stateful": lambda: generate(model, prime, 2000),
        "command": lambda: command(task, model, 2000),
        "previous": lambda: previous_generation(model, prime, 2000),
        "sequence": lambda: sequence_kernel_generation(model, prime, 2000),
    }
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved, so a change in background load hits all five
        for name, work in runs.items():
            rates[name].append(timed(work, 2000))
    for clock, label in ((0, "wall clock"), (1, "per CPU second of this thread")):
        floor, stateful, streamed, previous, sequence = (max(r[clock] for r in rates[name]) for name in runs)
        print(f"{label}: floor (the one-step path: embedding row, one {m.cell} step per layer, the {len(vocab)}-way "
              f"output; no sampling) {floor:,.0f} steps/s ({1e3 / floor:.3f} ms); stateful generation {stateful:,.0f} c/s "
              f"= {stateful / floor:.2f}x the floor, streamed as `seqtrain generate` writes it (to /dev/null) {streamed:,.0f} c/s = "
              f"{streamed / floor:.2f}x; the previous loop {previous:,.0f} c/s = {previous / floor:.2f}x "
              f"(now {stateful / previous:.2f}x faster); through the sequence kernel "
              f"per token {sequence:,.0f} c/s (one-step path {stateful / sequence:.1f}x faster)", flush=True)
    print(f"best of {args.rounds} interleaved rounds of 2,000 characters; load average {os.getloadavg()[0]:.2f}")

    header = f"{'chars':>6} {'stateful c/s':>13} {f'window-{args.window} c/s':>15} {'whole-prefix c/s':>17} {'vs window':>10} {'vs prefix':>10}"
    print(header)
    for length in args.lengths:
        stateful = stateful_rate(model, prime, length)
        windowed, _ = refeed_rate(model, prime, length, args.window, float("inf"))
        whole, finished = refeed_rate(model, prime, length, 0, args.max_seconds)
        mark = "" if finished else "<"
        print(
            f"{length:>6} {stateful:>13,.0f} {windowed:>15,.0f} {mark + f'{whole:,.0f}':>17} "
            f"{stateful / windowed:>9.1f}x {('>' if mark else '') + f'{stateful / whole:.1f}x':>10}",
            flush=True,
        )
    longest = max(args.lengths)
    rates = ", ".join(f"{r:,.0f}" for r in block_rates(model, prime, longest))
    print(f"stateful c/s over each tenth of one {longest}-character generation: {rates}")


if __name__ == "__main__":
    main()
