"""The one training loop every task runs through.

It owns epochs, the optimizer, gradient clipping, the device, carried state
for truncated BPTT, early stopping, checkpoints, TensorBoard and progress. It
sees batches, losses and metric sums, never a task's internals. `fit` reads
as its four parts: set up, restore (on resume), one epoch at a time, finish.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from seqtrain.config import TrainSettings
from seqtrain.errors import SeqtrainError, first_line
from seqtrain.tasks.base import Loader, StepContext, Task, TaskData
from seqtrain.training.checkpoint import BEST, FORMAT, LAST, MARKER, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seqtrain.training.device import apply_threads, detach_state, move, resolve_device
from seqtrain.training.progress import epoch_progress, format_stats, metrics_table
from seqtrain.training.runs import new_run_dir, point_latest, resume_point
from seqtrain.training.tensorboard import RunLogger


def make_optimizer(train: TrainSettings, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    # The fused Adam kernels update every tensor in one pass: about 3x faster per step on CPU
    # than the default loop over tensors (scripts/bench_train.py times the whole step).
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=train.lr, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay)
    raise SeqtrainError(f"unknown optimizer '{train.optimizer}'; choose adam, adamw, rmsprop or sgd")


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
    """Where a run stands between epochs: exactly what a checkpoint saves beside the weights."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    best: float | None = None  # best validation score of the monitored metric
    bad_epochs: int = 0  # epochs since it last improved
    best_val: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0  # seconds spent training in earlier sessions of this run (resumes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainState:
        return cls(**raw)


@dataclass
class FitResult:
    run_dir: Path
    test: dict[str, float]
    best_val: dict[str, float]
    epochs: int
    interrupted: bool
    wall_time: float
    extra: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


@dataclass
class Session:
    """What one call of `fit` works with, built by set-up and restore."""

    run_dir: Path
    device: torch.device
    data: TaskData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR | None
    log: RunLogger
    state: TrainState
    started: float = field(default_factory=time.perf_counter)
    earlier: float = 0.0  # seconds trained in earlier sessions of this run

    def wall_time(self) -> float:
        """Seconds this run has taken, over all its sessions (a resumed run counts its first part too)."""
        return self.earlier + time.perf_counter() - self.started


class Trainer:
    def __init__(self, task: Task, console: Console | None = None):
        self.task = task
        self.config = task.config
        self.console = console
        self.stop_requested = False
        self.global_step = 0
        self.scheduled: dict[str, Callable[[int], float]] = {}
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    def fit(self, resume: Path | None = None) -> FitResult:
        """Train (or continue `resume`, a run folder), then test the best checkpoint once."""
        session = self._set_up(resume)
        interrupted = self._epochs(session)
        result = self._finish(session, interrupted)
        session.log.close()
        return result

    # ----------------------------------------------------------------- set-up
    def _set_up(self, resume: Path | None) -> Session:
        """Everything before the first step: run folder first (a read-only logdir fails before any data work)."""
        started, train = time.perf_counter(), self.config.train
        checkpoint = None
        if resume:
            path, checkpoint = resume_point(resume)
            if path.name != LAST:
                self._say(f"[yellow]{resume / LAST} cannot be loaded: resuming from {path.name}[/]")
        state = TrainState.from_dict(checkpoint["state"]) if checkpoint else TrainState()
        if checkpoint and state.epoch >= train.epochs:
            raise SeqtrainError(f"run {resume} already finished {state.epoch} epochs; pass a larger --epochs to continue")
        seed_everything(train.seed)
        device = resolve_device(train.device)
        run_dir = resume or new_run_dir(train.logdir, self.task.name)
        (run_dir / "config.toml").write_text(self.config.to_toml())  # on resume: --epochs may have changed
        try:
            meta = self.task.load_meta(checkpoint["meta"]) if checkpoint else None
            data = self.task.prepare(meta, quiet=self.console is None)
        except BaseException:
            if resume is None:  # nothing was trained: leave no empty run behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if resume is None:
            point_latest(run_dir)
        model = self.task.build_model(data.meta).to(device)
        threads = apply_threads(train.threads, model, train.batch_size, device)
        optimizer = make_optimizer(train, model.parameters())
        self.scheduler = make_scheduler(train, optimizer, self._steps_per_epoch(data.train) * train.epochs)
        self.scheduled = data.schedules
        if checkpoint:
            self._restore(checkpoint, model, optimizer)
        log = RunLogger(run_dir, purge_step=state.global_step if checkpoint else None)
        if not checkpoint:
            log.text("config", "```toml\n" + self.config.to_toml() + "```")
        self.global_step = state.global_step
        self._say(f"run [bold]{run_dir}[/]  device {device}  {threads}  parameters {sum(p.numel() for p in model.parameters()):,}")
        if not checkpoint:
            for note in self.task.notes():
                self._say(note)
        return Session(run_dir, device, data, model, optimizer, self.scheduler, log, state, started, state.wall_time)

    def _steps_per_epoch(self, loader: Loader) -> int:
        limit = self.config.train.max_steps
        return min(len(loader), limit) if limit else len(loader)

    def _restore(self, checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])

    def _save(self, session: Session, name: str) -> None:
        """Write a checkpoint; a full or read-only disk stops the run with one line, the previous file intact."""
        path = session.run_dir / name
        try:
            self._write_checkpoint(session, path)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            free = shutil.disk_usage(session.run_dir).free / 2**20
            raise SeqtrainError(
                f"cannot write {path}: {getattr(exc, 'strerror', None) or first_line(exc)} ({free:,.1f} MiB free there); the previous "
                f"{name} is kept: free some space and continue with `seqtrain fit --resume {session.run_dir}`"
            ) from exc

    def _write_checkpoint(self, session: Session, path: Path) -> None:
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
                "state": {**session.state.to_dict(), "wall_time": session.wall_time()},
                "rng": rng_state(),
            },
        )

    # ----------------------------------------------------------------- epochs
    def _epochs(self, s: Session) -> bool:
        """Train epoch after epoch; True if Ctrl-C stopped the run (after saving `last.pt`)."""
        previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            while s.state.epoch < self.config.train.epochs:
                if self._epoch(s):
                    return True
                if self.config.train.patience and s.state.bad_epochs >= self.config.train.patience:
                    self._say(f"early stop: no better validation {self.task.monitor} for {s.state.bad_epochs} epochs")
                    break
        finally:
            signal.signal(signal.SIGINT, previous_handler)
        return False

    def _epoch(self, s: Session) -> bool:
        """One epoch: train, validate, log, keep the best checkpoint. True if interrupted."""
        epoch, state = s.state.epoch, s.state
        train_metrics = self._run(s.model, s.data.train, s.device, epoch, s.optimizer, s.log)
        if self.stop_requested:
            state.global_step = self.global_step
            self._save(s, LAST)  # the interrupted epoch reruns from its start on resume
            self._say(f"[yellow]interrupted[/]: saved {s.run_dir / LAST}; continue with `seqtrain fit --resume {s.run_dir}`")
            return True
        val_metrics = self._run(s.model, s.data.val, s.device, epoch, None, s.log) if s.data.val is not None else {}
        state.epoch, state.global_step = epoch + 1, self.global_step
        s.log.scalars("epoch/train", train_metrics, state.epoch)
        s.log.scalars("epoch/val", val_metrics, state.epoch)
        s.log.scalar("epoch/lr", s.optimizer.param_groups[0]["lr"], state.epoch)
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
        return False

    # ----------------------------------------------------------------- finish
    def _finish(self, s: Session, interrupted: bool) -> FitResult:
        """Test the best checkpoint once, write metrics.json and the hparams summary, print the report."""
        test_metrics: dict[str, float] = {}
        extra: dict[str, dict[str, dict[str, float]]] = {}
        if not interrupted:
            s.model.load_state_dict(load_checkpoint(s.run_dir / BEST)["model"])
            if s.data.test is not None:
                test_metrics = self._run(s.model, s.data.test, s.device, s.state.epoch, None, s.log, label="test")
            extra = self.task.extra_rows(s.model, s.data)
            report = {
                "test": test_metrics, "best_val": s.state.best_val, "extra": extra, "epochs": s.state.epoch,
                "wall_time_s": s.wall_time(),
            }
            (s.run_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
            s.log.hparams(hparams_of(self.config), {
                **{f"test_{k}": test_metrics.get(k, math.nan) for k in self.task.metric_names},
                **{f"val_{k}": s.state.best_val.get(k, math.nan) for k in self.task.metric_names},
            })
            if self.console:
                rows = {"val": s.state.best_val, "test": test_metrics}
                rows.update({f"{name} {split}": values for split, named in extra.items() for name, values in named.items()})
                self.console.print(metrics_table(f"{self.task.name}: best epoch", rows))
        return FitResult(s.run_dir, test_metrics, s.state.best_val, s.state.epoch, interrupted, s.wall_time(), extra)

    # ------------------------------------------------------------ one pass
    def evaluate(self, model: nn.Module, loader: Loader, device: torch.device, label: str = "test") -> dict[str, float]:
        """Metrics of one pass without gradients (what `seqtrain evaluate` reports)."""
        return self._run(model, loader, device, 0, None, None, label)

    def _run(
        self,
        model: nn.Module,
        loader: Loader,
        device: torch.device,
        epoch: int,
        optimizer: torch.optim.Optimizer | None,
        log: RunLogger | None = None,
        label: str | None = None,
    ) -> dict[str, float]:
        """One pass over a loader: trains when given an optimizer, else evaluates without gradients.

        --max-steps bounds every pass, so a quick trial is quick end to end.
        """
        training = optimizer is not None
        label = label or ("train" if training else "val")
        loader.set_epoch(epoch)
        model.train(training)
        sums: dict[str, float] = {}
        count, state = 0, None
        total = self._steps_per_epoch(loader)
        started = time.perf_counter()
        headline = self.task.headline
        with epoch_progress(self.console) as progress, torch.set_grad_enabled(training):
            bar = progress.add_task(f"{label} {epoch + 1}/{self.config.train.epochs}", total=total, stats="")
            for index, batch in enumerate(loader):
                if index >= total:
                    break
                scheduled = {name: fn(self.global_step) for name, fn in self.scheduled.items()}
                ctx = StepContext(training, self.global_step, epoch, scheduled)
                result = self.task.step(model, move(batch, device), state, ctx)
                state = detach_state(result.state)
                if training:
                    self._update(model, optimizer, result.loss, scheduled, log)
                for key, value in result.sums.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += result.count
                if self.console is not None and (index % 5 == 0 or index + 1 == total):
                    current = self.task.metrics(sums, count)
                    shown = {k: current[k] for k in ("loss", headline) if k and k in current}
                    rate = count / max(time.perf_counter() - started, 1e-9)
                    progress.update(bar, completed=index + 1, stats=format_stats(shown, rate, self.task.unit))
                if training and self.stop_requested:
                    break
        return self.task.metrics(sums, count)

    def _update(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, scheduled: dict[str, float],
        log: RunLogger,
    ) -> None:
        """Back-propagate, clip, step the optimizer and LR schedule, and log the step."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.train.clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.global_step += 1
        log.scalar("train/loss", loss.item(), self.global_step)
        log.scalar("train/grad_norm", grad_norm, self.global_step)
        log.scalar("train/lr", optimizer.param_groups[0]["lr"], self.global_step)
        for name, value in scheduled.items():
            log.scalar(f"train/{name}", value, self.global_step)

    def _on_interrupt(self, signum, frame) -> None:
        if self.stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.stop_requested = True
        self._say("[yellow]stopping after this step (Ctrl-C again to abort without saving)[/]")

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)


def hparams_of(config) -> dict[str, Any]:
    """`section.field` -> value for TensorBoard's hparams table (None shown as 'none')."""
    flat: dict[str, Any] = {"task": config.task}
    flat.update({key: "none" if value is None else value for key, value in config.flat().items()})
    return flat
