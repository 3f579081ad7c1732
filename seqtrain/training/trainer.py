"""The one training loop every task runs through.

It owns epochs, the optimizer, gradient clipping, the device, carried state
for truncated BPTT, early stopping, checkpoints, TensorBoard and progress. It
sees batches, losses and metric sums, never a task's internals. `fit` reads
as its four parts: set up, restore (on resume), one epoch at a time, finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from seqtrain.config import TrainSettings
from seqtrain.errors import SeqtrainError, first_line
from seqtrain.sums import add_sums, as_floats, fetch, floats
from seqtrain.tasks.base import Loader, StepContext, Task, TaskData
from seqtrain.training.averaging import WeightAverage
from seqtrain.training.checkpoint import BEST, FORMAT, LAST, MARKER, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seqtrain.training import distributed
from seqtrain.training.device import apply_threads, detach_state, move, resolve_device, resolve_precision
from seqtrain.training.distributed import World
from seqtrain.training.guard import StepGuard
from seqtrain.training.progress import epoch_progress, format_stats, metrics_tables
from seqtrain.training.result import Run
from seqtrain.training.runs import clear_leftovers, new_run_dir, point_latest, resume_point
from seqtrain.training.tensorboard import RunLogger


#: steps between reads of the device in a training pass: progress, TensorBoard's per-step points, the bad-step limit
REFRESH = 5


def make_optimizer(train: TrainSettings, params: Iterable[nn.Parameter] | list[dict[str, Any]]) -> torch.optim.Optimizer:
    """--optimizer over the parameters that take gradients, or over parameter groups (dicts with their own "lr")."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in params]
    else:
        params = [p for p in params if p.requires_grad]
    # The fused Adam kernels update every tensor in one pass: about 3x faster per step on CPU
    # than the default loop over tensors (scripts/bench_train.py times the whole step).
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)
    if train.optimizer == "rmsprop":
        # Keras' constants (rho 0.9, epsilon 1e-7), not PyTorch's (alpha 0.99, eps 1e-8): the lectures' recipes assume them.
        return torch.optim.RMSprop(params, lr=train.lr, alpha=0.9, eps=1e-7, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay)
    raise SeqtrainError(f"unknown optimizer '{train.optimizer}'; choose adam, adamw, rmsprop or sgd")


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer can skip a non-finite step itself, told by a device flag (`found_inf`): no host sync.

    Fused Adam/AdamW leave the weights and moments as they were and take their step count back.
    Fused SGD would too, but on a skipped first step it keeps a momentum buffer of uninitialised memory.
    """
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and bool(optimizer.defaults.get("fused"))


def make_scheduler(
    train: TrainSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """Per-step decay of the learning rate to 0 over the whole run, or None for a constant rate."""
    if train.lr_schedule == "constant":
        return None
    if train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """Where a run stands: exactly what a checkpoint saves beside the weights.

    `position` counts the training batches of epoch `epoch` already done (a
    step checkpoint, or Ctrl-C), with their metric sums, so a resumed run
    carries on inside the epoch and reports the same epoch figures.
    """

    epoch: int = 0  # epochs completed
    global_step: int = 0
    best: float | None = None  # best validation score of the monitored metric
    bad_epochs: int = 0  # epochs since it last improved
    best_val: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0  # seconds spent training in earlier sessions of this run (resumes)
    position: int = 0  # training batches of the current epoch done
    sums: dict[str, float] = field(default_factory=dict)  # their metric sums (this rank's)
    count: int = 0
    bad_steps: int = 0  # non-finite steps in a row
    skipped_steps: int = 0  # non-finite steps skipped over the whole run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainState:
        return cls(**raw)


@dataclass
class Tally:
    """A training pass in progress: batches done, their metric sums, and the state carried per micro-batch."""

    position: int = 0
    sums: dict[str, Any] = field(default_factory=dict)  # floats, or device tensors since the last read
    count: int | torch.Tensor = 0  # a device tensor where the optimizer skips bad steps on the device
    carry: list[Any] | None = None


@dataclass
class Session:
    """What one call of `fit` works with, built by set-up and restore."""

    run_dir: Path
    device: torch.device
    data: TaskData
    model: nn.Module  # the model itself: what checkpoints hold and evaluation runs
    net: nn.Module  # what training steps call: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    scaler: torch.amp.GradScaler
    log: RunLogger | NullLogger
    state: TrainState
    tally: Tally = field(default_factory=Tally)
    average: WeightAverage | None = None  # --ema
    last_good: str = "none yet"  # the newest checkpoint written or resumed from, for the divergence message
    started: float = field(default_factory=time.perf_counter)
    earlier: float = 0.0  # seconds trained in earlier sessions of this run
    guard: StepGuard = field(init=False)

    def __post_init__(self) -> None:
        self.guard = StepGuard(self.state.bad_steps, self.state.skipped_steps)

    def wall_time(self) -> float:
        """Seconds this run has taken, over all its sessions (a resumed run counts its first part too)."""
        return self.earlier + time.perf_counter() - self.started


class NullLogger:
    """What ranks other than 0 log to: nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Trainer:
    def __init__(
        self, task: Task, console: Console | None = None,
        callbacks: Sequence[Callable[[int, dict[str, float]], Any]] = (), test: bool = True,
    ):
        """`callbacks` run after each epoch's checkpoints, on the first process: `callback(epoch, metrics)`, with
        the epoch's `train_*` and `val_*` metrics; one returning True stops the run there, as early stopping does,
        and one raising ends the run with its exception (a search prunes a trial so). `test=False` leaves the
        test split unscored (a search scores only its best trial's)."""
        self.task = task
        self.test = test
        self.run_dir: Path | None = None  # the run's folder, once fit() has made or found it
        self.config = task.config
        self.console = console
        self.callbacks = list(callbacks)
        self.stopped_by_callback = False  # ... agreed by every rank
        self.world = World()
        self.signalled = False  # Ctrl-C seen by this process
        self.stop_requested = False  # ... and agreed by every rank: stop after this step
        self.global_step = 0
        self.scheduled: dict[str, Callable[[int], float]] = {}
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    def fit(self, resume: Path | None = None) -> Run:
        """Train (or continue `resume`, a run folder), then test the best checkpoint once."""
        self.world = distributed.join(self.config.train.device)
        if not self.world.main:
            self.console = None
        try:
            with deterministic_modes(self.config.train.deterministic):
                return self._fit(resume)
        except Exception as exc:
            stalled = distributed.stalled(self.world, exc)
            if stalled is None:
                raise
            raise stalled from exc
        finally:
            distributed.leave(self.world)

    def _fit(self, resume: Path | None) -> Run:
        """The four parts: set up, one epoch at a time, finish."""
        session = self._set_up(resume)
        try:
            interrupted = self._epochs(session)
            return self._finish(session, interrupted)
        finally:
            session.log.close()

    # ----------------------------------------------------------------- set-up
    def _set_up(self, resume: Path | None) -> Session:
        """Everything before the first step: run folder first (a read-only logdir fails before any data work)."""
        started, train = time.perf_counter(), self.config.train
        checkpoint, path = None, None
        if resume:
            path, checkpoint = resume_point(resume)
            if path.name != LAST:
                self._say(f"[yellow]{escape(str(resume / LAST))} cannot be loaded: resuming from {escape(path.name)}[/]")
        state = TrainState.from_dict(checkpoint["state"]) if checkpoint else TrainState()
        if checkpoint and state.epoch >= train.epochs and (resume / "metrics.json").exists():
            raise SeqtrainError(f"run {resume} already finished {state.epoch} epochs; pass a larger --epochs to continue")
        distributed.check_batch(self.world, train.batch_size, train.accumulate)
        seed_everything(train.seed)
        device = distributed.rank_device(self.world, resolve_device(train.device))
        check_precision(train.precision, device)
        run_dir = None
        if self.world.main:
            run_dir = resume or new_run_dir(train.logdir, self.task.name)
            if resume:
                clear_leftovers(resume)
            (run_dir / "config.toml").write_text(self.config.to_toml())  # on resume: --epochs may have changed
        run_dir = distributed.share(self.world, run_dir)
        self.run_dir = run_dir
        try:
            meta = self.task.load_meta(checkpoint["meta"]) if checkpoint else None
            data = self.task.prepare(meta, quiet=self.console is None)
        except BaseException:
            if resume is None and self.world.main:  # nothing was trained: leave no empty run behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if resume is None and self.world.main:
            point_latest(run_dir)
        model = self.task.build_model(data.meta).to(device)
        threads = apply_threads(train.threads, model, train.batch_size, device)
        optimizer = self.task.optimizer(model) or make_optimizer(train, model.parameters())
        self.scheduler = make_scheduler(train, optimizer, self._steps_per_epoch(data.train) * train.epochs)
        self.scheduled = data.schedules
        scaler = torch.amp.GradScaler(device.type, enabled=train.precision == "16")
        if self.world.parallel:  # ranks differ in dropout, share the weights (DDP copies rank 0's)
            torch.manual_seed(train.seed * 1000003 + self.world.rank)
        tally = Tally()
        average = WeightAverage(train.ema) if train.ema else None
        if checkpoint:
            tally = self._restore(checkpoint, state, model, optimizer, scaler)
            if average is not None and checkpoint.get("average"):
                average.load_state_dict(checkpoint["average"], device)
        net = model
        if self.world.parallel:
            net = distributed.wrap(model, device)
        log = RunLogger(run_dir, purge_step=state.global_step if checkpoint else None) if self.world.main else NullLogger()
        if not checkpoint:
            log.text("config", "```toml\n" + self.config.to_toml() + "```")
        self.global_step = state.global_step
        processes = f"  processes {self.world.size}" if self.world.parallel else ""
        self._say(
            f"run [bold]{escape(str(run_dir))}[/]  {escape(f'device {device}{processes}  {threads}')}  parameters {sum(p.numel() for p in model.parameters()):,}"
        )
        precision_note = resolve_precision(train.precision, device)[1]
        if precision_note:
            self._say(f"[yellow]{escape(precision_note)}[/]")
        if not checkpoint:
            for note in self.task.notes():
                self._say(escape(note))
        elif state.position:
            self._say(f"resuming epoch {state.epoch + 1:d} after its batch {state.position:d} (step {state.global_step:d})")
        last_good = f"{path} (step {state.global_step})" if checkpoint else "none yet"
        return Session(
            run_dir, device, data, model, net, optimizer, self.scheduler, scaler, log, state, tally, average, last_good,
            started, state.wall_time,
        )

    def _steps_per_epoch(self, loader: Loader) -> int:
        limit = self.config.train.max_steps
        return min(len(loader), limit) if limit else len(loader)

    def _restore(
        self, checkpoint: dict[str, Any], state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> Tally:
        """Weights, optimizer, schedule, this rank's RNG and, mid-epoch, the pass so far."""
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler.is_enabled() and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        ranks = checkpoint.get("ranks") or [{"rng": checkpoint["rng"], "carry": None}]
        set_rng_state(ranks[self.world.rank]["rng"] if len(ranks) == self.world.size else checkpoint["rng"])
        carry = None
        if state.position and any(r["carry"] is not None for r in ranks):
            if len(ranks) != self.world.size:
                raise SeqtrainError(
                    f"this checkpoint was saved inside an epoch by {len(ranks)} process(es), with the recurrent state of "
                    f"each one's columns; resume it with {len(ranks)} process(es)"
                )
            carry = ranks[self.world.rank]["carry"]
        return Tally(state.position, dict(state.sums), state.count, carry)

    def _save(self, session: Session, name: str) -> None:
        """Write a checkpoint (rank 0); a full or read-only disk stops the run with one line, the previous file intact.

        Weights that are not finite are never written: the run stops and names the last good checkpoint.
        """
        self._settle(session)  # a run past --max-bad-steps stops here, before anything is written
        s, tally = session, session.tally
        s.state.global_step, s.state.position, s.state.sums, s.state.count = (
            self.global_step, tally.position, dict(tally.sums), tally.count
        )
        mine = {"rng": rng_state(), "carry": tally.carry}
        if self.world.parallel:
            mine["weights"] = distributed.digest(s.model)
        ranks = distributed.gather(self.world, mine)
        if not self.world.main:
            return
        if len({r.get("weights") for r in ranks}) > 1:
            raise RuntimeError(f"the {len(ranks)} processes hold different weights at step {self.global_step}")
        if not all(torch.isfinite(p).all() for p in s.model.parameters()):
            raise self._diverged(s, "the weights are no longer finite")
        path = s.run_dir / name
        try:
            self._write_checkpoint(s, path, ranks)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            free = shutil.disk_usage(s.run_dir).free / 2**20
            # torch.save reports a full disk as "unexpected pos N vs M": the file stopped short
            reason = getattr(exc, "strerror", None) or ("the file stopped short" if "unexpected pos" in str(exc) else first_line(exc))
            raise SeqtrainError(
                f"cannot write {path}: {reason} ({free:,.1f} MiB free there); the previous "
                f"{name} is kept: free some space and continue with `seqtrain fit --resume {s.run_dir}`"
            ) from exc
        if name == LAST:
            s.last_good = f"{path} (step {self.global_step})"

    def _write_checkpoint(self, session: Session, path: Path, ranks: list[dict[str, Any]]) -> None:
        save_checkpoint(
            path,
            {
                "marker": MARKER,
                "format": FORMAT,
                "task": self.task.name,
                "config": self.config.to_dict(),
                "meta": session.data.meta.to_dict(),
                "model": session.model.state_dict(),
                "optimizer": session.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": session.scaler.state_dict() if session.scaler.is_enabled() else None,
                "state": {**session.state.to_dict(), "wall_time": session.wall_time()},
                "rng": ranks[0]["rng"],
                "ranks": ranks,
                "average": session.average.state_dict() if session.average is not None else None,
            },
        )

    # ----------------------------------------------------------------- epochs
    def _epochs(self, s: Session) -> bool:
        """Train epoch after epoch; True if Ctrl-C stopped the run (after saving `last.pt`)."""
        # Only the main thread may handle signals: a run started from another thread (a library user's) leaves Ctrl-C as it is.
        main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, self._on_interrupt) if main_thread else None
        try:
            while s.state.epoch < self.config.train.epochs:
                if self._epoch(s):
                    return True
                if self.config.train.patience and s.state.bad_epochs >= self.config.train.patience:
                    self._say(escape(f"early stop: no better validation {self.task.monitor} for {s.state.bad_epochs} epochs"))
                    break
                if self.stopped_by_callback:
                    self._say(f"stopped by a callback after epoch {s.state.epoch:d}")
                    break
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous_handler)
        return False

    def _epoch(self, s: Session) -> bool:
        """One epoch: train, validate, log, keep the best checkpoint. True if interrupted."""
        epoch, state = s.state.epoch, s.state
        self.task.on_epoch_start(s.model, epoch + 1)
        train_metrics = self._train_pass(s, epoch)
        if self.stop_requested:
            self._save(s, LAST)  # with the position in the epoch: a resumed run carries on from the next batch
            self._interrupted(s)
            return True
        # With --ema the average is what is validated, shown and kept as best.pt; last.pt keeps the trained weights.
        with s.average.applied(s.model) if s.average is not None else contextlib.nullcontext():
            val_metrics = self._run(s.model, s.data.val, s.device, epoch) if s.data.val is not None else {}
            state.epoch = epoch + 1
            s.tally = Tally()
            s.log.scalars("epoch/train", train_metrics, state.epoch)
            s.log.scalars("epoch/val", val_metrics, state.epoch)
            s.log.scalar("epoch/lr", s.optimizer.param_groups[0]["lr"], state.epoch)
            s.log.scalar("epoch/nonfinite_steps", state.skipped_steps, state.epoch)
            if self.world.main:
                self.task.on_epoch_end(s.model, s.data, s.log, state.epoch)
            score = (val_metrics or train_metrics)[self.task.monitor]
            better = state.best is None or (score > state.best if self.task.monitor_mode == "max" else score < state.best)
            if better:
                state.best, state.bad_epochs, state.best_val = score, 0, val_metrics
                self._save(s, BEST)
            else:
                state.bad_epochs += 1
        self._save(s, LAST)
        s.log.flush()
        stop = self._call_back(state.epoch, train_metrics, val_metrics)
        # Ctrl-C during validation, or a callback's stop, anywhere
        interrupted, stopped = distributed.total(self.world, [float(self.signalled), float(stop)])
        self.stop_requested, self.stopped_by_callback = interrupted > 0, stopped > 0
        if self.stop_requested:
            self._interrupted(s)
        return self.stop_requested

    def _call_back(self, epoch: int, train_metrics: dict[str, float], val_metrics: dict[str, float]) -> bool:
        """Run the callbacks (first process only); True if one asked to stop (returned True, the bool)."""
        if not self.world.main:
            return False
        metrics = {**{f"train_{k}": v for k, v in train_metrics.items()}, **{f"val_{k}": v for k, v in val_metrics.items()}}
        answers = [callback(epoch, dict(metrics)) for callback in self.callbacks]
        return any(answer is True for answer in answers)

    def _interrupted(self, s: Session) -> None:
        self._say(f"[yellow]interrupted[/]: saved {escape(str(s.run_dir / LAST))}; continue with `seqtrain fit --resume {escape(str(s.run_dir))}`")

    # ----------------------------------------------------------------- finish
    def _finish(self, s: Session, interrupted: bool) -> Run:
        """Test the best checkpoint once, write metrics.json and the hparams summary, print the report."""
        test_metrics: dict[str, float] = {}
        extra: dict[str, dict[str, dict[str, float]]] = {}
        warnings: list[str] = []
        if not interrupted:
            distributed.barrier(self.world)  # best.pt is written
            s.model.load_state_dict(load_checkpoint(s.run_dir / BEST)["model"])
            if s.data.test is not None and self.test:
                test_metrics = self._run(s.model, s.data.test, s.device, s.state.epoch, label="test")
            if self.world.main:
                extra = self.task.extra_rows(s.model, s.data)
                warnings = worse_than_baselines(self.task, s.state.best_val, test_metrics, extra)
                self._report(s, test_metrics, extra, warnings)
        return Run(
            s.run_dir, self.task.name, test_metrics, s.state.best_val, s.state.epoch, interrupted, s.wall_time(), extra, warnings
        )

    def _report(self, s: Session, test_metrics: dict[str, float], extra: dict, warnings: list[str]) -> None:
        report = {
            "test": test_metrics, "best_val": s.state.best_val, "extra": extra, "epochs": s.state.epoch,
            "wall_time_s": s.wall_time(), "nonfinite_steps": s.state.skipped_steps, "warnings": warnings,
        }
        (s.run_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        s.log.hparams(hparams_of(self.config), {
            **{f"test_{k}": test_metrics.get(k, math.nan) for k in self.task.metric_names},
            **{f"val_{k}": s.state.best_val.get(k, math.nan) for k in self.task.metric_names},
        })
        for line in warnings:
            s.log.text("warning", line)
        if self.console:
            rows = {"val": s.state.best_val, **({"test": test_metrics} if self.test else {})}
            rows.update({f"{name} {split}": values for split, named in extra.items() for name, values in named.items()})
            title = f"{self.task.name}: best epoch" + (" [bold red](worse than a baseline)[/]" if warnings else "")
            for table in metrics_tables(title, rows, self.task.metric_names):
                self.console.print(table)
            for line in warnings:
                self.console.print(f"[bold red]warning[/]: {escape(line)}", highlight=False, soft_wrap=True)

    # ------------------------------------------------------------ passes
    def evaluate(self, model: nn.Module, loader: Loader, device: torch.device, label: str = "test") -> dict[str, float]:
        """Metrics of one pass without gradients (what `seqtrain evaluate` reports)."""
        return self._run(model, loader, device, 0, label)

    def train_epoch(
        self, model: nn.Module, loader: Loader, device: torch.device, optimizer: torch.optim.Optimizer,
        log: RunLogger | None = None, epoch: int = 0,
    ) -> dict[str, float]:
        """One training pass outside `fit`, through the same steps (the benchmarks time the trainer's own loop so)."""
        scaler = torch.amp.GradScaler(device.type, enabled=self.config.train.precision == "16")
        data = TaskData(loader, None, None, None)
        session = Session(Path("."), device, data, model, model, optimizer, None, scaler, log or NullLogger(), TrainState())
        return self._train_pass(session, epoch)

    def _run(self, model: nn.Module, loader: Loader, device: torch.device, epoch: int, label: str = "val") -> dict[str, float]:
        """One evaluation pass without gradients; each rank scores its rows of every batch and the sums are added up.

        --max-steps bounds every pass, so a quick trial is quick end to end.
        """
        loader.set_epoch(epoch)
        model.eval()
        sums: dict[str, float] = {}
        count, carry = 0, None
        total = self._steps_per_epoch(loader)
        world = self.world
        ctx = StepContext(False, self.global_step, epoch, {})
        title = self._epoch_title(label, epoch) if label == "val" else label  # a test pass belongs to no epoch
        with self._progress(title, total, 0) as show, torch.no_grad():
            for index, batch in enumerate(itertools.islice(loader, total)):
                if world.parallel:
                    batch = distributed.part(batch, world.rank, world.size)
                    if distributed.rows(batch) == 0:
                        continue
                with self._autocast(device):
                    result = self.task.step(model, move(batch, device), carry, ctx)
                carry = detach_state(result.state)
                add_sums(sums, result.sums)
                count += result.count
                show(index, sums, count)
        sums, count = distributed.sum_dicts(world, floats(sums), count)
        return self.task.metrics(sums, count)

    def _train_pass(self, s: Session, epoch: int) -> dict[str, float]:
        """The epoch's training batches from `s.tally.position` on; stops early (position kept) on an agreed Ctrl-C."""
        loader, tally, every = s.data.train, s.tally, self.config.train.save_every
        loader.set_epoch(epoch)
        s.net.train()
        total = self._steps_per_epoch(loader)
        with self._progress(self._epoch_title("train", epoch), total, tally.position) as show:
            for index, batch in enumerate(itertools.islice(loader, tally.position, total), tally.position):
                self._train_step(s, batch, epoch)
                tally.position = index + 1
                if index % REFRESH == 0 or index + 1 == total:
                    self._settle(s)
                    show(index, tally.sums, tally.count)
                if self.stop_requested:
                    break
                if every and self.global_step % every == 0:
                    self._save(s, LAST)
        self._settle(s)
        sums, count = distributed.sum_dicts(self.world, tally.sums, tally.count)
        return self.task.metrics(sums, count)

    def _settle(self, s: Session) -> None:
        """One read from the device: the pass's sums and count, the steps' TensorBoard points and the bad-step counters.

        A run that reached --max-bad-steps non-finite steps in a row stops here, naming the step where it did.
        """
        tally, guard, state = s.tally, s.guard, s.state
        size = len(tally.sums)
        fetched = fetch([*tally.sums.values(), tally.count, *guard.pending()])
        tally.sums, tally.count = as_floats(list(tally.sums), fetched[:size]), int(fetched[size])
        reading = guard.settle(fetched[size + 1:])
        state.bad_steps, state.skipped_steps = guard.in_a_row, guard.skipped
        for point in reading.points:
            s.log.scalar("train/loss", point.loss, point.step)
            s.log.scalar("train/grad_norm", point.grad_norm, point.step)
            if point.bad:
                s.log.scalar("train/nonfinite_steps", point.skipped, point.step)
        if reading.reached is not None:
            s.log.flush()
            limit = self.config.train.max_bad_steps
            raise self._diverged(
                s, f"{limit} steps in a row had a non-finite loss or gradient norm", reading.reached, reading.lr
            )

    def _train_step(self, s: Session, batch: Any, epoch: int) -> None:
        """One optimizer step over a whole batch: this rank's micro-batches, weighted so the gradient is the batch's.

        A non-finite loss or gradient norm skips the update (the schedule still advances) and is counted;
        `--max-bad-steps` of them in a row stop the run (at the next read, `_settle`). With fused Adam/AdamW the
        optimizer skips on a device flag and the step never waits for the device; otherwise (other optimizers, a
        gradient scaler, several processes) it reads the flag once.
        """
        train, world, tally = self.config.train, self.world, s.tally
        accumulate = train.accumulate
        parts = world.size * accumulate
        scheduled = {name: fn(self.global_step) for name, fn in self.scheduled.items()}
        ctx = StepContext(True, self.global_step, epoch, scheduled)
        if parts > 1 and distributed.rows(batch) < parts:  # a short last batch every rank sees alike: skipped
            return
        pieces = [distributed.part(batch, world.rank * accumulate + i, parts) for i in range(accumulate)] if parts > 1 else [batch]
        if tally.carry is None:
            tally.carry = [None] * accumulate
        s.optimizer.zero_grad(set_to_none=True)
        results = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            with contextlib.nullcontext() if last or not world.parallel else s.net.no_sync():
                with self._autocast(s.device):
                    result = self.task.step(s.net, move(piece, s.device), tally.carry[i], ctx)
                loss = result.loss * result.count if parts > 1 else result.loss
                s.scaler.scale(loss).backward()
            tally.carry[i] = detach_state(result.state)
            results.append(result)
        local = sum(r.count for r in results)
        mean_loss = (
            sum(r.loss.detach().float() * r.count for r in results) / max(local, 1) if parts > 1 else results[0].loss.detach().float()
        )
        params = [p for group in s.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if s.scaler.is_enabled():
            s.scaler.unscale_(s.optimizer)
        bad_elsewhere = False
        if world.parallel:  # one small collective: the batch's size, Ctrl-C anywhere, a non-finite loss anywhere
            whole, stop, bad_anywhere = distributed.total(
                world, [local, float(self.signalled), float(not math.isfinite(mean_loss.item()))]
            )
            self.stop_requested, bad_elsewhere = stop > 0, bad_anywhere > 0
        else:
            whole, self.stop_requested = local, self.signalled
        if parts > 1 and params:  # DDP averaged the ranks' count-weighted sums: make them the batch's mean
            torch._foreach_mul_([p.grad for p in params], world.size / max(whole, 1))
        # Sparse embedding gradients (word2vec) are neither clipped nor counted in the norm.
        dense = [p for p in params if not p.grad.is_sparse]
        grad_norm = torch.nn.utils.clip_grad_norm_(dense, train.clip or math.inf).float().to(mean_loss.device)
        bad = ~torch.isfinite(mean_loss) | bad_elsewhere
        if not s.scaler.is_enabled():  # with a gradient scaler, an overflowing gradient is the scaler's business
            bad = bad | ~torch.isfinite(grad_norm)
        if skips_on_device(s.optimizer) and not s.scaler.is_enabled() and not world.parallel:
            s.optimizer.found_inf = bad.float()
            try:
                s.optimizer.step()
            finally:
                del s.optimizer.found_inf
            for result in results:
                add_sums(tally.sums, result.sums, keep=~bad)
            tally.count = tally.count + torch.where(bad, 0, local)
        elif bool(bad):  # the step's one host read
            s.optimizer.zero_grad(set_to_none=True)
            if s.scaler.is_enabled():
                s.scaler.update()
        else:
            if s.scaler.is_enabled():
                s.scaler.step(s.optimizer)
                s.scaler.update()
            else:
                s.optimizer.step()
            for result in results:
                add_sums(tally.sums, result.sums)
            tally.count += local
        if self.scheduler is not None:
            self.scheduler.step()
        if s.average is not None:
            s.average.update(s.model)
        self.global_step += 1
        lr = s.optimizer.param_groups[0]["lr"]
        s.guard.record(self.global_step, mean_loss, grad_norm, bad, train.max_bad_steps, lr)
        s.log.scalar("train/lr", lr, self.global_step)
        for name, value in scheduled.items():
            s.log.scalar(f"train/{name}", value, self.global_step)

    def _diverged(self, s: Session, why: str, step: int | None = None, lr: float | None = None) -> SeqtrainError:
        """The one-line stop of a diverged run, at `step` (default: now) with its learning rate `lr`."""
        step = self.global_step if step is None else step
        lr = s.optimizer.param_groups[0]["lr"] if lr is None else lr
        return SeqtrainError(
            f"training diverged at step {step} (learning rate {lr:.3g}): {why}; nothing non-finite was saved, "
            f"the last good checkpoint is {s.last_good}: lower --lr (or --clip) and train again"
        )

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        precision = resolve_precision(self.config.train.precision, device)[0]
        if precision == "32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)

    def _epoch_title(self, label: str, epoch: int) -> str:
        """A pass's progress title: 'train 2/5' for the second of five epochs (0-based `epoch`)."""
        return f"{label} {epoch + 1}/{self.config.train.epochs}"

    @contextlib.contextmanager
    def _progress(self, title: str, total: int, done: int):
        """A progress bar (none without a console); yields show(index, sums, count), cheap between refreshes."""
        started, base = time.perf_counter(), None
        with epoch_progress(self.console) as progress:
            bar = progress.add_task(title, total=total, completed=done, stats="")

            def show(index: int, sums: dict[str, float], count: int) -> None:
                nonlocal base
                if self.console is None or not (index % REFRESH == 0 or index + 1 == total):
                    return
                if base is None:  # what a resumed pass had counted before this session
                    base = count if done else 0
                current = self.task.metrics(floats(sums), count)
                shown = {k: current[k] for k in ("loss", self.task.headline) if k and k in current}
                rate = (count - base) / max(time.perf_counter() - started, 1e-9)
                progress.update(bar, completed=index + 1, stats=format_stats(shown, rate, self.task.unit))

            yield show

    def _on_interrupt(self, signum, frame) -> None:
        if self.signalled:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signalled = True
        self._say("[yellow]stopping after this step (Ctrl-C again to abort without saving)[/]")

    def _say(self, message: str) -> None:
        """Print rich markup; every value from outside (paths, notes, labels) passes through escape()."""
        if self.console is not None:
            self.console.print(message)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, an autocast precision the device cannot run."""
    if precision == "16" and device.type == "cpu":
        raise SeqtrainError("--precision 16 needs a GPU (float16 on CPU is slower than float32); use --precision bf16 or 32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SeqtrainError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --precision 16")


@contextlib.contextmanager
def deterministic_modes(enabled: bool):
    """Deterministic kernels only (torch's and cuDNN's) for the block, if enabled; the previous modes come back after.

    cuBLAS needs its workspace setting before CUDA starts, so it is set here, before any CUDA work.
    """
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1:]


def worse_than_baselines(
    task: Task, best_val: dict[str, float], test: dict[str, float], extra: dict[str, dict[str, dict[str, float]]]
) -> list[str]:
    """One line per baseline row (extra_rows) that beats the trained model on the monitored metric; the model's own
    breakdown rows (task.breakdown_rows: per class, per entity type) are not baselines."""
    metric, lines = task.monitor, []
    for split, rows in extra.items():
        ours = test if split == "test" else best_val if split == "val" else (test or best_val)
        if metric not in ours:
            continue
        for name, values in rows.items():
            if metric not in values or name.startswith(task.breakdown_rows):
                continue
            worse = ours[metric] < values[metric] if task.monitor_mode == "max" else ours[metric] > values[metric]
            if worse:
                which = split if split != "all" else ("test" if test else "val")
                lines.append(
                    f"the model is worse than the {name} baseline on {which}: {metric} {ours[metric]:.4g} vs {values[metric]:.4g}"
                )
    return lines


def hparams_of(config) -> dict[str, Any]:
    """`section.field` -> value for TensorBoard's hparams table (None shown as 'none')."""
    flat: dict[str, Any] = {"task": config.task}
    flat.update({key: "none" if value is None else value for key, value in config.flat().items()})
    return flat
