"""The training run, written out: `TrainingRun` - setup, train_step, validate, save_checkpoint, finish.

No Trainer base class and no callbacks: `run_training` at the bottom is the whole loop, and each
method of `TrainingRun` is one phase of it, in the order it happens. accelerate does device
placement, DDP (the model goes through `accelerator.prepare`) and collectives; everything else is here
(mixed precision: `precision.py`; TensorBoard: `tensorboard_log.py`, W&B: `wandb_report.py`). Every write
the file system refuses is one line that says how the run continues (`run_training`, `errors.writing`).
Everything that changes as training goes and must survive a restart is ONE dataclass, `RunState`, which
checkpoints save.

One optimizer step (`train_step`):
1. take `grad_accum_steps` micro-batches of this process (the stream is deterministic: see
   `batches.py`), count their supervised tokens and all-reduce the count - ONE sync point that
   also carries the stop flag (SIGTERM/SIGINT), so all processes stop at the same step;
2. for each micro-batch: augment + patchify on the device, forward THROUGH the DDP wrapper
   (`SupervisedLossModel`: hidden states -> lm_head on supervised positions only -> loss sum),
   backward of `loss_sum * world_size / step_tokens` (DDP averages gradients over processes, so
   this makes the step's gradient the mean over ALL supervised tokens of the step). Gradient
   all-reduce only on the last micro-batch (`no_sync` before);
3. clip, optimizer step (skipped and counted when the gradient is not finite; under fp16 the
   GradScaler decides), scheduler step (the schedule counts optimizer steps), zero grads;
4. with a curriculum (`data.curriculum`, see `curriculum.py`): all-reduce the step's loss, update
   the smoothed loss and, when the stage's rule says so, restart the data stream on the next stage.
Then `run_training` logs, validates (`validate`: generation on the val split) and checkpoints.

>>> from banglaocr.config import load_recipe
>>> recipe = load_recipe("cpu_demo", ["train.max_steps=2", "data.synth.n=40"])
>>> recipe.train.samples_per_step()
16
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import gather_object, set_seed
from rich.console import Console
from safetensors import SafetensorError
from transformers.utils import logging as transformers_logging

from banglaocr.clock import deadline
from banglaocr.config import Recipe, load_recipe, save_recipe
from banglaocr.confusion import ConfusionStats, char_weights
from banglaocr.data.collate import Collator, finish_batch_on_device
from banglaocr.data.pixels import resize_to_budget
from banglaocr.data.sources import SkipReport, load_splits, resolve_source, unreadable_reason
from banglaocr.errors import FilesystemError, UserError, filesystem_error, os_error_code, writing
from banglaocr.evaluation import Evaluation, evaluate_records
from banglaocr.files import atomic_folder, atomic_write, commit_folder, fresh_tmp_folder, write_json
from banglaocr.infer import ReadSettings, load_read_settings, save_read_settings
from banglaocr.live_display import wants_live_display
from banglaocr.model.factory import (load_model, save_model_folder, skip_lora_input_casts,
                                     trainable_parameter_summary)
from banglaocr.model.shipped import model_source
from banglaocr.model_card import HEATMAP, write_training_card
from banglaocr.train import checkpoint as ckpt
from banglaocr.train.resume_check import recipe_changes
from banglaocr.train.resume_state import check_training_state
from banglaocr.train.run_folder import RunFolderLock, claim_run_folder
from banglaocr.train.batches import BatchStream, SkippingCollator, WordImages, data_fingerprint
from banglaocr.train.engines import refuse_unproven_engine
from banglaocr.train.curriculum import (CurriculumState, describe_stage, scaled_augment, should_advance,
                                        stage_indices, stage_seed)
from banglaocr.train.loss import batch_token_weights, supervised_token_count
from banglaocr.train.supervised_model import SupervisedLossModel
from banglaocr.train.trainable_weights import load_trainable_state, restore_from_folder, trainable_state
from banglaocr.train.optim import build_optimizer
from banglaocr.train.precision import mixed_precision, refuse_half_precision_trainables, stop_message, window_warnings
from banglaocr.train.progress import MetricsLog, make_progress, plot_curves, summary_table
from banglaocr.train.schedule import build_scheduler
from banglaocr.train.threads import choose_threads
from banglaocr.train.tensorboard_log import TensorBoardLog
from banglaocr.train.wandb_report import close_wandb, finish_wandb, start_wandb
from banglaocr.train.wandb_report import log_row as wandb_log_row


BEST_STEP_FILE = "best_step.json"
"""In best/: the optimizer step (and validation CER) whose weights it holds."""


class TrainingInterrupted(Exception):
    """Raised after a SIGTERM/SIGINT (exit code 143/130) or at the time limit (exit code 0): a checkpoint
    was saved; `continue_with` (in the message) is the command that continues the run. `main`: raised in the
    main process (the one that says so; the others stop with the same exit code, silently)."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path, time_limit: str | None = None,
                 continue_with: str = "--resume auto", main: bool = True):
        stopped = f"stopped by {signal_name}" if time_limit is None else f"stopped before the {time_limit}"
        super().__init__(f"{stopped} after step {step}; checkpoint saved to {checkpoint}; continue with: "
                         f"{continue_with}")
        self.signal_name = signal_name
        self.main = main
        self.exit_code = 0 if time_limit is not None else 130 if signal_name == "SIGINT" else 143


def resume_command(output_dir: Path, processes: int = 1, argv: list[str] | None = None,
                   environ: dict | None = None) -> str:
    """The shell command that continues the run in `output_dir`, complete: this process's own `banglaocr train`
    command line when it is one (`--resume auto` in place of any `--resume`, no `--overwrite`, and the run
    folder named when the command did not name it), else - a notebook, a script calling `run_training` - one
    that trains the run's saved recipe. Under a multi-process launch, with accelerate's launcher in front (on
    several machines: what to give each machine's launcher).

    >>> resume_command(Path("runs/x"), argv=["/venv/bin/banglaocr", "train", "-r", "cpu_demo", "--overwrite"],
    ...                environ={})
    '/venv/bin/banglaocr train -r cpu_demo --output-dir runs/x --resume auto'
    >>> resume_command(Path("runs/x"), 2, argv=["ipykernel_launcher.py", "-f", "k.json"], environ={})
    'accelerate launch --multi_gpu --num_processes 2 -m banglaocr train --recipe runs/x/recipe.yaml --output-dir runs/x --resume auto'
    >>> resume_command(Path("runs/x"), 4, argv=["x/banglaocr/__main__.py", "train", "-r", "r.yaml", "-o", "runs/x"],
    ...                environ={"LOCAL_WORLD_SIZE": "2"})
    'the same launch on every machine, with -m banglaocr train -r r.yaml -o runs/x --resume auto'
    """
    import os
    import shlex
    import shutil

    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    launcher = Path(argv[0]) if argv else Path()
    from_cli = len(argv) > 1 and argv[1] == "train" and (
        launcher.name == "banglaocr" or (launcher.name == "__main__.py" and launcher.parent.name == "banglaocr"))
    if from_cli:
        args, rest = [], iter(argv[2:])
        for arg in rest:
            if arg == "--resume":
                next(rest, None)
            elif arg != "--overwrite" and not arg.startswith("--resume="):
                args.append(arg)
        if not any(arg in ("-o", "--output-dir", "--output_dir") or arg.startswith(("--output-dir=", "--output_dir="))
                   or (arg.startswith("-o") and not arg.startswith("--")) for arg in args):
            args += ["--output-dir", str(output_dir)]
    else:
        args = ["--recipe", str(Path(output_dir) / "recipe.yaml"), "--output-dir", str(output_dir)]
    args += ["--resume", "auto"]
    prefix = ""
    if processes > 1 and int(environ.get("LOCAL_WORLD_SIZE", processes)) != processes:
        # Several machines: each one's launcher has its own rank and address; those stay as they were.
        return "the same launch on every machine, with " + shlex.join(["-m", "banglaocr", "train", *args])
    if processes > 1:
        program = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "-m", "banglaocr"]
        if environ.get("ACCELERATE_USE_CPU"):
            prefix = "ACCELERATE_USE_CPU=1 "  # an assignment for the shell: not quoted
    elif from_cli and launcher.name == "banglaocr":
        # The name alone where the shell finds this very program by it; else the path it was started by.
        found = shutil.which("banglaocr")
        program = ["banglaocr" if found and os.path.abspath(found) == os.path.abspath(launcher) else str(launcher)]
    elif from_cli:
        found = shutil.which("python")
        python = "python" if found and os.path.abspath(found) == os.path.abspath(sys.executable) else sys.executable
        program = [python, "-m", "banglaocr"]
    else:
        program = ["banglaocr"]
    return prefix + shlex.join([*program, "train", *args])


@dataclass
class RunState:
    """Everything that changes as training goes and must survive a restart (saved in checkpoints)."""
    step: int = 0
    batches_consumed: int = 0  # global micro-batches drawn from the stream (with a curriculum: the stage's)
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    skipped_samples: int = 0
    best_val_cer: float | None = None
    best_step: int | None = None
    train_time_s: float = 0.0
    samples_seen: int = 0
    confusion: dict | None = None
    last_val_cer: float | None = None
    skipped_examples: list = field(default_factory=list)
    curriculum: dict | None = None  # CurriculumState.as_dict() while data.curriculum is set
    val_cer_before: float | None = None  # eval.before_training: the starting model's val CER
    wandb_id: str | None = None  # the W&B run a resumed run continues


@dataclass
class LogWindow:
    """What the steps since the last log row added up to (not saved: a resumed run opens a new window)."""
    loss: torch.Tensor  # summed token losses, on the device (read only at log steps: no sync per step)
    tokens: float = 0.0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    skipped: int = 0  # steps skipped for a non-finite gradient
    grad_norm_sum: float = 0.0  # of the steps that were not skipped (before clipping)
    grad_norm_max: float = 0.0
    loss_scale_at_start: float | None = None  # fp16: the GradScaler's scale when the window opened


class StopSignal:
    """Turns SIGTERM / SIGINT into a flag the loop checks at the next step boundary."""
    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_training(recipe: Recipe, output_dir: str | Path | None = None, resume: str | None = None,
                 console: Any = None, overwrite: bool = False, allow_recipe_change: bool = False) -> dict:
    """Train as `recipe` says; return the summary (also written to `output_dir/summary.json`).

    `overwrite` writes into a folder that holds something else (or replaces an earlier run);
    `allow_recipe_change` resumes a checkpoint with a recipe that makes it a different run.
    """
    run = TrainingRun(recipe, output_dir, resume, console, overwrite, allow_recipe_change)
    try:
        return _train(run)
    except FilesystemError as err:  # a writer named its path: add how the run continues after the fix
        run.check_run_folder()  # a write that failed because the whole folder went: say that instead
        raise err.followed_by(run.how_to_continue()) from None
    except Exception as err:
        # Any other write the file system refused (a library's own file): the same one line, with the path the
        # error names (else the output folder). Anything else is a bug: it raises as it is.
        if os_error_code(err) is None:
            raise
        run.check_run_folder()
        path = Path(getattr(err, "filename", None) or run.output_dir)
        ours = path.absolute().is_relative_to(run.output_dir.absolute())  # else perhaps an input: "cannot use"
        raise filesystem_error(err, path, run.how_to_continue(), verb="write" if ours else "use") from None
    finally:
        run.release()


def _train(run: TrainingRun) -> dict:
    """The loop: setup, (validation before training,) steps with logging, validation and checkpoints, finish."""
    run.setup()
    cfg, recipe = run.cfg, run.recipe
    with StopSignal() as stop, run.live_progress():
        if recipe.eval.before_training and run.splits.val and run.state.step == 0:
            # The starting model's score: the "before" of a fine-tune (step 0 of metrics.jsonl).
            run.validate(None, run.scheduler.get_last_lr()[0])
            run.state.val_cer_before = run.state.last_val_cer
        run.wrapper.train()
        while run.state.step < cfg.max_steps:
            step_lr, stage_row = run.train_step(stop)
            step = run.state.step
            final_step = step == cfg.max_steps
            if cfg.log_steps and step % cfg.log_steps == 0 or final_step:
                run.log_window(step_lr, stage_row)
            run.progress.update(run.task, completed=step, left=run.time_left())
            if run.splits.val and (cfg.eval_steps and step % cfg.eval_steps == 0 or final_step):
                run.validate(run.last_loss, step_lr)
            run.state.train_time_s = time.perf_counter() - run.run_start
            if cfg.save_steps and step % cfg.save_steps == 0 or final_step:
                run.save_checkpoint()
    return run.finish()


class TrainingRun:
    """One training run: the recipe, the accelerator, the model, the data stream and the `RunState`.

    Methods in the order a run calls them: `setup`, then per step `train_step`, `log_window`,
    `validate`, `save_checkpoint`; `finish` at the end (final model, test split, summary).
    """

    def __init__(self, recipe: Recipe, output_dir: str | Path | None, resume: str | None, console: Any,
                 overwrite: bool = False, allow_recipe_change: bool = False):

        transformers_logging.disable_progress_bar()  # "Writing model shards" bars would break the live display
        if output_dir is not None:  # the saved recipe names the folder the run really wrote to
            recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, output_dir=str(output_dir)))
        self.recipe, self.cfg = recipe, recipe.train
        self.output_dir = Path(self.cfg.output_dir)
        self.console = console or Console()
        self.resume, self.overwrite, self.allow_recipe_change = resume, overwrite, allow_recipe_change
        self.lock: RunFolderLock | None = None
        self.accelerator: Accelerator | None = None
        self.wandb_run = None  # the W&B run (main process, train.report_to has wandb)
        self.tensorboard: TensorBoardLog | None = None  # main process, train.report_to has tensorboard
        self.previous_threads: int | None = None
        self.threads_note = ""
        self.state = RunState()
        self.last_loss: float | None = None  # the loss of the last log row
        self.best_weights: dict | None = None  # trainable weights of the best validation so far (for the test)
        self.char_weight_table: dict | None = None  # confusion weights of the last validation
        self.last_good_batch: dict | None = None
        self.last_saved_step = -1
        self.abandoned: list[Path] = []  # newer checkpoints of a run replaced by resuming an older one
        self.started = time.time()  # the time limit counts from here
        self.deadline, self.deadline_note = deadline(self.cfg.time_limit, self.started)
        self.deadline_label = "time limit" if self.cfg.time_limit is not None else "end of the Kaggle session"
        self.last_step_at: float | None = None
        self.step_seconds: float | None = None  # smoothed duration of a step (for the time limit)
        self.save_seconds: float | None = None  # duration of the last checkpoint

    def release(self) -> None:
        """Free the run folder's lock (also freed by the OS if the process dies); restore torch's threads."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.previous_threads is not None:
            torch.set_num_threads(self.previous_threads)
            self.previous_threads = None
        if self.wandb_run is not None:  # stopped early (a signal, the time limit, an error)
            problem = close_wandb(self.wandb_run)  # a failure is a warning: it must not hide why the run stopped
            self.wandb_run = None
            if problem:
                self.console.print(f"[yellow]warning: {problem}[/]", highlight=False)
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.accelerator is not None:
            # accelerate keeps its mixed-precision choice for the whole process: without this, a second
            # run in the same Python process (a notebook) with another train.precision would fail.
            # The process group (PartialState) is kept.
            AcceleratorState._reset_state()
            self.accelerator = None

    def phase(self, what: str):
        """A spinner with `what` while a start-up phase runs (main process, interactive consoles; it leaves no
        line behind - the line that follows says what the phase did and how long it took)."""
        if self.accelerator.is_main_process and wants_live_display(self.console):  # a ! cell keeps every frame
            return self.console.status(f"{what} ...")
        return contextlib.nullcontext()

    def say(self, *args, **kwargs) -> None:
        """Print on the main process only."""
        if self.accelerator.is_main_process:
            self.console.print(*args, **kwargs)

    def how_to_continue(self) -> str:
        """What continues this run once a failed write is fixed ("" before the run folder was claimed: then
        nothing of the run was written and the same command starts it)."""
        if self.lock is None:
            return ""
        newest = ckpt.list_checkpoints(self.output_dir / "checkpoints")
        if newest:
            return f"continue with --resume auto (it resumes from checkpoint {newest[-1].name}, which is intact)"
        return "run the same command with --resume auto (no checkpoint was saved yet: it starts at step 0)"

    def check_run_folder(self) -> None:
        """Refuse to go on when the output folder was removed, moved or replaced while training (the lock file
        we hold is not the one at its path any more): what would be written now would land nowhere, or in a
        folder that is no longer the run's."""
        if self.lock is not None and not self.lock.in_place():
            raise UserError(f"the output folder {self.output_dir} was removed or replaced while training, and its "
                            "checkpoints with it: recreate it and start the run again, or - if you moved it - "
                            "continue there with --output-dir NEW --resume auto")

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Accelerator, run folder, data, model, optimizer, resume: everything before the first step."""
        self._setup_accelerator()
        if self.main:  # marked and locked first: nothing is written into a folder that is not ours
            self.lock = claim_run_folder(self.output_dir, resuming=self.resume is not None, overwrite=self.overwrite)
            if self.lock.restarted:
                self.say(f"note: {self.output_dir} held a run that stopped before its first step (nothing trained, "
                         "no checkpoint); starting it again")
        self.accelerator.wait_for_everyone()
        self.resume_from = ckpt.resolve_resume(self.resume, self.output_dir, self.say)
        if self.resume_from is not None:
            self._check_resumed_recipe(self.resume_from)
        self._set_threads()
        if self.main:
            with writing(self.output_dir / "recipe.yaml"):
                save_recipe(self.recipe, self.output_dir / "recipe.yaml")
        set_seed(self.cfg.seed)
        self._setup_data()
        set_seed(self.cfg.seed)  # the same random init on every process, whatever the data code drew
        self._setup_model()
        if self.resume_from is not None:
            self._restore(self.resume_from)
        self._setup_logging()
        self._setup_stream()
        if self.state.confusion and self.recipe.loss.confusion_weight > 0:
            self.char_weight_table = _char_weights(self.state.confusion, self.recipe.loss.confusion_cap)
        self.last_saved_step = self.state.step if self.resume_from is not None else -1
        self.window = LogWindow(loss=torch.zeros((), device=self.device, dtype=torch.float64),
                                loss_scale_at_start=self.precision.loss_scale())
        self.run_start = time.perf_counter() - self.state.train_time_s

    def _setup_accelerator(self) -> None:
        """accelerate's Accelerator, refusing engines this loop is not proven with (see `refuse_unproven_engine`)."""
        refuse_unproven_engine()
        self.use_tensorboard = "tensorboard" in self.cfg.report_to and _tensorboard_available()
        # mixed_precision "no": autocast and the GradScaler are the loop's own (precision.py), the same on every device.
        # TensorBoard is written by TensorBoardLog, in this thread (accelerate's tracker writes from a thread of
        # its own, whose failures are tracebacks): the Accelerator gets no tracker.
        self.accelerator = Accelerator(mixed_precision="no", project_dir=str(self.output_dir))
        refuse_unproven_engine(self.accelerator.distributed_type.value)
        self.precision = mixed_precision(self.cfg.precision, self.accelerator.device)
        self.main = self.accelerator.is_main_process
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        if self.recipe.model.device_map is not None and self.world > 1:
            raise UserError("model.device_map=auto splits ONE process over the GPUs; do not combine it with "
                            "multi-process (DDP) launches - use one or the other")

    def _set_threads(self) -> None:
        """torch's CPU threads (`threads.choose_threads`): a resumed run computes with the count its checkpoint's did."""
        if self.accelerator.device.type == "cpu" or self.cfg.threads is not None:
            saved = ckpt.saved_threads(self.resume_from, self.rank) if self.resume_from is not None else None
            threads, self.threads_note = choose_threads(self.cfg.threads, self.world, saved)
            self.previous_threads = torch.get_num_threads()  # put back by release()
            torch.set_num_threads(threads)

    def _setup_data(self) -> None:
        """Rendered / downloaded once (main process first), then read by everyone."""
        started = time.perf_counter()
        first_use = " (synthetic images are rendered on first use)" if self.recipe.data.source == "synth" else ""
        with self.phase(f"loading data{first_use}"), self.accelerator.main_process_first():
            data_cfg = resolve_source(self.recipe.data, self.output_dir)
            self.splits = load_splits(data_cfg)
        splits = self.splits
        self.say(f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test from "
                 f"{data_cfg.source}; {splits.skipped.summary()} ({time.perf_counter() - started:.1f} s)")

    def _setup_model(self) -> None:
        """Model (+ LoRA), the loss wrapper, optimizer and schedule, through `accelerator.prepare`."""
        recipe, cfg = self.recipe, self.cfg
        started = time.perf_counter()
        with self.phase(f"loading model {recipe.model.name_or_path}"):
            self.loaded = load_model(recipe.model, recipe.lora, precision=cfg.precision)
        refuse_half_precision_trainables(self.loaded.model, cfg.precision)
        if self.loaded.is_peft and self.precision.name != "fp32":
            skip_lora_input_casts(self.loaded.model)  # every forward here runs under autocast
        trainable, total = trainable_parameter_summary(self.loaded.model)
        self.say(f"model: {recipe.model.name_or_path} ({recipe.model.init}), {total / 1e6:.2f} M parameters, "
                 f"{trainable / 1e6:.2f} M trainable ({'LoRA' if self.loaded.is_peft else 'full fine-tune'}) "
                 f"({time.perf_counter() - started:.1f} s)")
        if self.threads_note:
            self.say(self.threads_note)
        if self.deadline_note:
            self.say(self.deadline_note)
        if self.precision.name == "fp16" and self.precision.device_type == "cpu":
            self.say("[yellow]note: fp16 on the CPU rehearses a T4's fp16 path (autocast + GradScaler); it is slower "
                     "than fp32 here[/]")
        wrapper = SupervisedLossModel(self.loaded.model, recipe.loss.focal_gamma, recipe.loss.label_smoothing)
        optimizer = build_optimizer(wrapper.model, cfg)
        self.scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.scheduler)
        if self.resume_from is not None:  # before prepare: DDP broadcasts rank 0's weights at wrap time
            restore_from_folder(wrapper.model, self.resume_from)  # its model/ folder holds them (once)
        if recipe.model.device_map is None:
            self.wrapper, self.optimizer = self.accelerator.prepare(wrapper, optimizer)
            self.device = self.accelerator.device
        else:
            from banglaocr.model.placement import input_device, placement_summary

            # accelerate placed the layers (load_model); inputs and labels go where the embedding runs -
            # the first parameter may be offloaded (meta) or on another GPU.
            self.wrapper, self.optimizer = wrapper, self.accelerator.prepare(optimizer)
            self.device = input_device(wrapper.model)
            self.say(placement_summary(wrapper.model) or f"device map: everything on {self.device}")
        self.inner = self.accelerator.unwrap_model(self.wrapper)
        self.params = [p for p in self.wrapper.parameters() if p.requires_grad]
        self.augment_generator = torch.Generator().manual_seed(cfg.seed * 7919 + 17 + self.rank)
        self.settings = ReadSettings(image=recipe.data.image, prompt=recipe.data.prompt,
                                     max_new_tokens=recipe.eval.max_new_tokens)
        self._note_base_settings()

    def _note_base_settings(self) -> None:
        base = _base_read_settings(self.recipe)
        settings = self.settings
        if base is not None and (base.image, base.prompt) != (settings.image, settings.prompt):
            # Legal (a new budget is a new task), but usually an oversight that costs the base's skill.
            self.say(f"[yellow]note: {self.recipe.model.name_or_path} was trained with image {base.image} and "
                     f"prompt '{base.prompt}'; this recipe uses image {settings.image} and prompt "
                     f"'{settings.prompt}'[/]")

    def _restore(self, folder: Path) -> None:
        """Optimizer, scheduler, GradScaler, `RunState` and this process's RNG states from a checkpoint."""
        saved = ckpt.read_training_state(folder)
        check_training_state(folder, saved, optimizer=self.optimizer, scheduler=self.scheduler,
                             scaler_state=self.precision.state_dict(), run_state_type=RunState,
                             batches_per_step=self.cfg.grad_accum_steps * self.world,
                             samples_per_step=self.cfg.batch_size * self.cfg.grad_accum_steps * self.world,
                             stages=self.recipe.data.curriculum, train_data=data_fingerprint(self.splits.train),
                             allow_recipe_change=self.allow_recipe_change)  # before anything is loaded
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.precision.load_state_dict(saved.get("scaler"))
        self.state = RunState(**saved["run_state"])
        rng = ckpt.read_rng_state(folder, self.rank)
        if rng is not None:
            ckpt.restore_rng_state(rng, self.augment_generator)
        own = self.output_dir / "checkpoints"
        if folder.parent.resolve() == own.resolve():  # never another run's folder (an explicit --resume path)
            self.abandoned = ckpt.checkpoints_after(own, self.state.step)
        self.say(f"resumed from {folder} at step {self.state.step}")
        if self.abandoned:
            self.say(f"[yellow]note: the newer checkpoints {', '.join(p.name for p in self.abandoned)} belong to "
                     "the run this resume replaces; they are removed when this run saves its first checkpoint[/]")

    def _check_resumed_recipe(self, folder: Path) -> None:
        """Refuse a resume whose recipe makes it a different run (unless allowed); note other changes."""
        try:
            saved = load_recipe(folder / "recipe.yaml")
        except (UserError, OSError) as err:
            if self.allow_recipe_change:
                return
            raise UserError(f"cannot read the recipe of checkpoint {folder} ({err}); pass --allow-recipe-change "
                            "to resume with this recipe anyway") from None
        refused, allowed = recipe_changes(saved, self.recipe)
        writers = len(list(folder.glob("rng-rank*.json"))) or len(list(folder.glob("rng-rank*.pt")))
        if writers and writers != self.world:  # global micro-batch g goes to process g % processes
            refused.append(f"the number of processes ({writers} -> {self.world})")
        if refused and not self.allow_recipe_change:
            raise UserError(f"the recipe differs from checkpoint {folder.name}'s in {', '.join(refused)}: that "
                            "would be a different run; restore those values, start a new run (another "
                            "--output-dir), or pass --allow-recipe-change")
        if refused or allowed:
            self.say(f"[yellow]note: resuming with changed {', '.join(refused + allowed)}[/]")

    def _setup_logging(self) -> None:
        """metrics.jsonl (cut back to the checkpoint's step on resume), TensorBoard, the skip report."""
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl")
        if self.main:
            if self.resume_from is not None:
                torn = self.metrics_log.truncate_after(self.state.step)
                if torn:
                    self.say(f"[yellow]note: {torn}[/]", highlight=False)
            elif self.metrics_log.path.exists():
                with writing(self.metrics_log.path):
                    self.metrics_log.path.unlink()
        if self.use_tensorboard and self.main:
            self.tensorboard = TensorBoardLog(self.output_dir / "tensorboard")
        if "wandb" in self.cfg.report_to and self.main:
            self.wandb_run, self.state.wandb_id = start_wandb(self.recipe, self.output_dir, self.state.wandb_id)
        self.skip_report = SkipReport()
        self.skip_report.merge(self.splits.skipped)
        self.counted_unreadable = {tuple(pair) for pair in self.state.skipped_examples}
        for reason, sample_id in self.state.skipped_examples:  # counted before a resume
            self.skip_report.add(reason, sample_id)

    def count_unreadable(self, sample_id: str, error: str) -> None:
        """Count an image that failed to decode ONCE per run: later epochs and evaluations meet it
        again, and a resumed run restores what was counted before the interruption."""
        reason = unreadable_reason(error)
        if (reason, sample_id) in self.counted_unreadable:
            return
        self.counted_unreadable.add((reason, sample_id))
        self.state.skipped_examples.append([reason, sample_id])  # saved in checkpoints
        self.state.skipped_samples = len(self.state.skipped_examples)
        self.skip_report.add(reason, sample_id)

    # ------------------------------------------------------------------ the data stream (and its curriculum)

    def _setup_stream(self) -> None:
        """This process's micro-batch stream, at `state.batches_consumed` (of the current curriculum stage).

        Curriculum (data.curriculum): each stage streams ITS samples with its own seed from micro-batch 0
        (state.batches_consumed counts within the stage), so the data after a stage change depends on the
        stage alone and a checkpoint (stage + batches consumed) resumes exactly. Every stage's selection
        is made now: a stage that selects nothing fails here, not hours into the run.
        """
        self.stages = self.recipe.data.curriculum
        if self.stages is not None:
            self.stage_subsets = [stage_indices(self.splits.train, stage, index)
                                  for index, stage in enumerate(self.stages)]
            self.curriculum = CurriculumState.from_dict(self.state.curriculum, self.stages)
            self.state.curriculum = self.curriculum.as_dict()
            self._announce_stage()
        self._open_stream()

    def _announce_stage(self) -> None:

        index = self.curriculum.stage
        self.say(describe_stage(self.stages[index], index, len(self.stages), len(self.stage_subsets[index])))

    def _open_stream(self) -> None:
        """`self.batches` from `state.batches_consumed` on, and `self.augment_cfg` of the current stage."""
        cfg, recipe = self.cfg, self.recipe
        if self.stages is None:
            records, seed, self.augment_cfg = self.splits.train, cfg.seed, recipe.augment
        else:
            stage = self.curriculum.stage
            records = [self.splits.train[i] for i in self.stage_subsets[stage]]
            seed = stage_seed(cfg.seed, stage)
            self.augment_cfg = scaled_augment(recipe.augment, self.stages[stage].augment_strength)
        stream = BatchStream(lengths=[len(r.text) for r in records], batch_size=cfg.batch_size,
                             seed=seed, group_by_length=cfg.group_by_length, rank=self.rank, world_size=self.world)
        loader = torch.utils.data.DataLoader(
            WordImages(records, recipe.data.image),
            batch_sampler=stream.iterate(self.state.batches_consumed),
            collate_fn=SkippingCollator(Collator(self.loaded.tokenizer, recipe.data.prompt, train=True)),
            num_workers=recipe.data.num_workers, pin_memory=torch.cuda.is_available(),
            # Its own generator: creating the iterator draws a worker base seed, which would otherwise come
            # from the global torch RNG that dropout uses - right after a resume restored it (not exact).
            generator=torch.Generator().manual_seed(seed),
        )
        self.batches = iter(loader)

    # ------------------------------------------------------------------ one optimizer step

    def train_step(self, stop: StopSignal) -> tuple[float, dict]:
        """One optimizer step (module docstring, 1-4); returns the rate it used and the curriculum's log fields."""
        micro = self._draw_micro_batches()
        step_tokens = self._sync_step_tokens(micro, stop)
        step_loss = self._forward_backward(micro, step_tokens)
        step_lr, skipped = self._optimizer_step()
        if skipped:  # a non-finite loss would poison the logged window and the curriculum's smoothed loss
            return step_lr, {}
        self.window.loss += step_loss
        self.window.tokens += step_tokens
        stage_row = self._curriculum_after_step(step_loss, step_tokens) if self.stages is not None else {}
        return step_lr, stage_row

    def _draw_micro_batches(self) -> list[tuple[dict, float]]:
        """This process's `grad_accum_steps` micro-batches, as (batch, weight) pairs."""
        micro = []
        for _ in range(self.cfg.grad_accum_steps):
            batch = next(self.batches)
            self.state.batches_consumed += self.world
            for sample_id, reason in batch["skipped"]:
                self.count_unreadable(sample_id, reason)
            if "input_ids" in batch:
                self.last_good_batch = batch
                micro.append((batch, 1.0))
            else:
                # Every sample of this micro-batch failed to decode: run a zero-weight pass so all
                # processes still make the same number of forward/backward passes (and collective
                # calls) - with a blank placeholder when this process has had no good batch yet.
                micro.append((self.last_good_batch or self._placeholder_batch(), 0.0))
        return micro

    def _placeholder_batch(self) -> dict:
        """One blank image with a one-letter answer: the input of a zero-weight pass."""
        budget = self.recipe.data.image
        image = resize_to_budget(Image.new("RGB", (budget.min_width, budget.height), "white"), budget)
        return Collator(self.loaded.tokenizer, self.recipe.data.prompt, train=True)([{"image": image, "text": "ক"}])

    def _sync_step_tokens(self, micro: list[tuple[dict, float]], stop: StopSignal) -> float:
        """The step's supervised tokens over ALL processes - the one sync point of the step, which also
        carries the stop flag. On a stop: checkpoint and raise `TrainingInterrupted`."""
        local_tokens = sum(int(supervised_token_count(batch["labels"])) * weight for batch, weight in micro)
        flags = torch.tensor([float(local_tokens), 1.0 if stop.received else 0.0, 1.0 if self._out_of_time() else 0.0],
                             device=self.device)
        flags = self.accelerator.reduce(flags, reduction="sum") if self.world > 1 else flags
        step_tokens, stop_now, time_up = float(flags[0]), bool(flags[1] > 0), bool(flags[2] > 0)
        if stop_now or time_up:
            # The micro-batches just drawn belong to a step that never runs: give them back, so the
            # resumed run draws them again (nothing skipped).
            self.state.batches_consumed -= self.cfg.grad_accum_steps * self.world
            path = self.save_checkpoint() if self.last_saved_step != self.state.step else \
                self.output_dir / "checkpoints" / f"step-{self.state.step}"
            raise TrainingInterrupted(stop.received or "SIGTERM", self.state.step, path,
                                      time_limit=None if stop_now else self.deadline_label,
                                      continue_with=resume_command(self.output_dir, self.world), main=self.main)
        if step_tokens == 0:
            raise UserError("a training step has no supervised tokens (every image unreadable?)")
        return step_tokens

    def _out_of_time(self) -> bool:
        """Too close to the deadline for one more step and a checkpoint (both as long as measured so far)."""
        if self.deadline is None:
            return False
        now = time.time()
        step = now - self.last_step_at if self.last_step_at is not None else 0.0
        self.last_step_at = now
        self.step_seconds = step if self.step_seconds is None else 0.8 * self.step_seconds + 0.2 * step
        saving = self.save_seconds if self.save_seconds is not None else min(60.0, 0.05 * (self.deadline - self.started))
        return now + 2 * self.step_seconds + 2 * saving >= self.deadline

    def _forward_backward(self, micro: list[tuple[dict, float]], step_tokens: float) -> torch.Tensor:
        """Forward + backward of every micro-batch; returns the step's summed token loss (on the device)."""
        loss_cfg, accelerator = self.recipe.loss, self.accelerator
        use_confusion = self.char_weight_table is not None and self.state.step >= loss_cfg.confusion_start_step
        scale = self.world / step_tokens
        step_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        for index, (batch, weight) in enumerate(micro):
            last = index == len(micro) - 1
            sync = contextlib.nullcontext() if last or self.world == 1 else accelerator.no_sync(self.wrapper)
            with sync:
                with self.precision.autocast():

                    inputs = finish_batch_on_device(batch, self.device, self.augment_cfg, self.augment_generator)
                    labels = batch["labels"].to(self.device, non_blocking=True)
                    token_weights = batch_token_weights(batch, self.char_weight_table) if use_confusion else None
                    if token_weights is not None:
                        token_weights = token_weights.to(self.device)
                    loss_sum = self.wrapper(inputs, labels, token_weights,
                                            loss_cfg.confusion_weight if use_confusion else 0.0)
                accelerator.backward(self.precision.scale(loss_sum * (scale * weight)))
            step_loss += loss_sum.detach().double() * weight
            self.window.samples += len(batch["texts"]) * self.world if weight else 0
        return step_loss

    def _optimizer_step(self) -> tuple[float, bool]:
        """Unscale (fp16), clip, step (unless the gradient is not finite), schedule, zero; returns the rate this
        update used and whether the update was skipped. The window counts steps, skips and gradient norms."""
        cfg, state, window = self.cfg, self.state, self.window
        self.precision.unscale(self.optimizer)
        grad_norm = float(self.accelerator.clip_grad_norm_(  # CPU-GPU sync (cheap next to the step)
            self.params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf))
        skipped = self.precision.step(self.optimizer, grad_norm)
        step_lr = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():
            # The schedule counts optimizer steps, skipped ones included (so the rate is a function of
            # the step alone); torch warns when a skipped first step precedes the scheduler's step.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        window.steps += 1
        if not skipped:
            window.grad_norm_sum += grad_norm
            window.grad_norm_max = max(window.grad_norm_max, grad_norm)
            state.consecutive_nonfinite = 0
            return step_lr, False
        window.skipped += 1
        state.nonfinite_steps += 1
        state.consecutive_nonfinite += 1
        if state.consecutive_nonfinite >= cfg.max_nonfinite_steps:
            raise UserError(stop_message(state.step, state.consecutive_nonfinite, self.precision.name))
        return step_lr, True

    def _curriculum_after_step(self, step_loss: torch.Tensor, step_tokens: float) -> dict:
        """Smoothed loss and stage change, the same on every process; the log fields of the stage.

        The step's mean token loss over ALL processes (one scalar all-reduce per step, only with a
        curriculum): every process sees the same numbers, so all change stage at the same step. Per step
        rather than per log window: the decision depends neither on train.log_steps nor on where a
        resumed run's first log window starts, and the state is whole at every step.
        """
        total = self.accelerator.reduce(step_loss.clone(), reduction="sum") if self.world > 1 else step_loss
        self.curriculum = self.curriculum.after_step(float(total) / step_tokens)
        row = {"curriculum_stage": self.curriculum.stage, "curriculum_loss": self.curriculum.loss_ema}
        if should_advance(self.stages, self.curriculum):
            done = self.curriculum
            smoothed = f"{done.loss_ema:.4f}" if done.loss_ema is not None else "-"
            self.say(f"step {self.state.step}: curriculum stage [{done.stage}] done after {done.steps} "
                     f"steps (smoothed loss {smoothed})")
            self.curriculum = done.advanced()
            self.state.batches_consumed = 0
            self._open_stream()
            self._announce_stage()
        self.state.curriculum = self.curriculum.as_dict()  # before any checkpoint of this step
        return row

    # ------------------------------------------------------------------ logging and validation

    def live_progress(self):
        """The progress bar (main process), as a context manager for the loop."""
        last_cer = self.state.last_val_cer
        self.progress = make_progress(self.console, time_limited=self.deadline is not None)
        # lr "-" until the first log row: before its first step a warm-up schedule's rate is 0.
        self.task = self.progress.add_task("train", total=self.cfg.max_steps, completed=self.state.step, loss="-",
                                           lr="-", speed="-", val_cer=f"{last_cer:.3f}" if last_cer is not None else "-",
                                           left=self.time_left(), grad_norm="-", scale="-",
                                           skipped=str(self.state.nonfinite_steps))
        return self.progress if self.main else contextlib.nullcontext()

    def time_left(self) -> str:
        """h:mm:ss until the time limit ("" without one)."""
        from banglaocr.clock import format_duration

        return "" if self.deadline is None else format_duration(self.deadline - time.time())

    def log_row(self, row: dict) -> None:
        """One metrics.jsonl row (main process) and the same numbers to TensorBoard (and W&B)."""
        if self.main:
            self.check_run_folder()
            self.metrics_log.write(row)
        if self.wandb_run is not None:
            problem = wandb_log_row(self.wandb_run, row)
            if problem:  # W&B is a copy of metrics.jsonl: warn once and go on without it
                self.say(f"[yellow]warning: {problem}[/]", highlight=False)
                self.wandb_run = None
        if self.tensorboard is not None:
            self.tensorboard.write({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))},
                                   step=row["step"])

    def log_window(self, step_lr: float, stage_row: dict) -> None:
        """The log row of the steps since the last one: mean token loss over all processes, speed, gradient
        norms, skipped steps (and the fp16 loss scale) - with a warning line when fp16 keeps overflowing."""
        window, accelerator, state = self.window, self.accelerator, self.state
        total_loss = accelerator.reduce(window.loss.clone(), reduction="sum") if self.world > 1 else window.loss
        elapsed = time.perf_counter() - window.started
        # window.tokens already counts every process (the step's all-reduced count). No loss when every
        # step of the window was skipped as non-finite (never a made-up 0 or a NaN).
        self.last_loss = float(total_loss) / window.tokens if window.tokens > 0 else None
        speed = window.samples / max(elapsed, 1e-9)
        finite = window.steps - window.skipped
        grad_norm = window.grad_norm_sum / finite if finite else None
        scale = self.precision.loss_scale()
        precision_row = {"grad_norm": grad_norm, "grad_norm_max": window.grad_norm_max if finite else None,
                         "skipped_steps": window.skipped, "nonfinite_steps": state.nonfinite_steps}
        if scale is not None:
            precision_row["loss_scale"] = scale
        self.log_row({"step": state.step, "loss": self.last_loss, "lr": step_lr, "samples_per_s": speed,
                      "elapsed_s": time.perf_counter() - self.run_start, **precision_row, **stage_row})
        for line in window_warnings(self.precision, state.step, window.steps, window.skipped,
                                    window.loss_scale_at_start):
            self.say(f"[yellow]warning: {line}[/]")
        shown = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
        self.progress.update(self.task, loss=shown, lr=f"{step_lr:.2e}", speed=f"{speed:.1f}",
                             grad_norm=f"{grad_norm:.3g}" if grad_norm is not None else "-",
                             scale=f"{scale:g}" if scale is not None else "-", skipped=str(state.nonfinite_steps))
        state.samples_seen += window.samples
        self.window = LogWindow(loss=window.loss.zero_(), loss_scale_at_start=scale)

    def evaluate(self, records: list, max_samples: int | None = None) -> Evaluation:
        """Generation on `records` (sharded over processes, gathered in order); unreadable images counted."""
        chosen = records[:max_samples] if max_samples else records
        with self.precision.autocast():
            result = evaluate_records(self.inner.model, self.loaded.tokenizer, chosen, self.settings,
                                      batch_size=self.recipe.eval.batch_size, num_beams=self.recipe.eval.num_beams,
                                      process_index=self.rank, num_processes=self.world)
        for sample_id, error in result.unreadable:
            self.count_unreadable(sample_id, error)
        if result.scores is None:
            raise UserError(f"no image of the evaluation split could be read ({self.skip_report.summary()})")
        return result

    def validate(self, loss: float | None, lr: float) -> None:
        """Score the validation split by generation: log it, update the confusion table, keep the best model."""
        recipe, state = self.recipe, self.state
        result = self.evaluate(self.splits.val, recipe.eval.max_samples)
        scores, rows = result.scores, result.rows
        state.last_val_cer = scores["cer"]
        confusion = ConfusionStats().update([r["reference"] for r in rows], [r["prediction"] for r in rows])
        state.confusion = confusion.to_dict()
        if recipe.loss.confusion_weight > 0:
            self.char_weight_table = _char_weights(state.confusion, recipe.loss.confusion_cap)
        self.log_row({"step": state.step, "loss": loss, "lr": lr,
                      **{f"val_{k}": scores[k] for k in ("cer", "mean_cer", "wer", "ger", "exact_match",
                                                         "empty_predictions", "n")}})
        self.progress.update(self.task, val_cer=f"{scores['cer']:.3f}")
        self.say(f"step {state.step}: val CER {scores['cer']:.4f}  WER {scores['wer']:.4f}  "
                 f"exact {scores['exact_match']:.3f}  empty {scores['empty_predictions']}  "
                 f"(e.g. '{rows[0]['reference']}' -> '{rows[0]['prediction']}')")
        if state.best_val_cer is None or scores["cer"] < state.best_val_cer:
            state.best_val_cer, state.best_step = scores["cer"], state.step
            self.best_weights = trainable_state(self.inner.model)
            if self.main:
                self._save_best()
        self.wrapper.train()

    # ------------------------------------------------------------------ saving

    def save_model(self, folder: Path, metrics: dict | None = None) -> None:
        """A model folder that loads on its own (adapter or full weights, tokenizer, read settings, recipe)
        and is ready for the hub (a model card with `metrics` and the confusion heatmap)."""
        with writing(folder), atomic_folder(folder) as tmp:
            save_model_folder(self.loaded, tmp)
            save_read_settings(tmp, self.settings, tokenizer=self.loaded.tokenizer)
            save_recipe(self.recipe, tmp / "recipe.yaml")
            self.write_card(tmp, metrics)

    def write_card(self, folder: Path, metrics: dict | None, heatmap: bool = True) -> None:
        """README.md for the hub (`model_card.write_training_card`); `heatmap`: draw the last validation's
        confusion heatmap - False keeps the one the folder already has."""
        base = self.loaded.base_name_or_path if self.loaded.is_peft else (
            self.recipe.model.name_or_path if self.recipe.model.init == "pretrained" else None)
        write_training_card(folder, self.recipe, base, self.loaded.is_peft, metrics,
                            self.state.confusion if heatmap else None)

    def _save_best(self) -> None:
        """best/, with the step it holds (what a resumed run's test split is scored with: `_saved_best_weights`)."""
        folder = self.output_dir / "best"
        self.check_run_folder()
        self.save_model(folder, {"val_cer": self.state.best_val_cer, "step": self.state.best_step})
        # After a resume, a best/ of another (abandoned) run must not be used: its step says whose it is.
        with writing(folder / BEST_STEP_FILE):
            write_json(folder / BEST_STEP_FILE, {"step": self.state.best_step, "val_cer": self.state.best_val_cer})

    def save_checkpoint(self) -> Path:
        """checkpoints/step-N, written into a temporary folder and renamed into place when complete.

        A write that fails (a full disk, a permission, a read-only file system) leaves the previous checkpoints
        as they were and stops the run with one line that says which it was; `--resume auto` continues from
        the newest whole checkpoint.
        """
        state, accelerator = self.state, self.accelerator
        final = self.output_dir / "checkpoints" / f"step-{state.step}"
        tmp = final.parent / f".tmp-{final.name}"
        saving_started = time.time()
        if self.main:
            self.check_run_folder()  # before fresh_tmp_folder, which would create a vanished folder again
        try:
            if self.main:
                fresh_tmp_folder(final)
            accelerator.wait_for_everyone()
            ckpt.write_state(tmp, f"rng-rank{self.rank}", ckpt.capture_rng_state(self.augment_generator))
            accelerator.wait_for_everyone()
            if self.main:
                self._write_checkpoint(tmp)
                commit_folder(tmp, final)
        except (OSError, SafetensorError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            failed = filesystem_error(err, final, what="checkpoint")
            if failed.code in (errno.ENOSPC, errno.EDQUOT):
                failed = failed.changed(remedy=f"{failed.remedy} (or lower train.keep_last)")
            raise failed.followed_by(self.how_to_continue()) from None
        if self.main:
            for folder in self.abandoned:  # the replaced run's newer checkpoints: this run has its own now
                if folder != final:  # a step both runs saved was just replaced by this run's
                    shutil.rmtree(folder, ignore_errors=True)
            self.abandoned = []
            ckpt.rotate_checkpoints(final.parent, self.cfg.keep_last)
        accelerator.wait_for_everyone()
        self.last_saved_step = state.step
        self.save_seconds = time.time() - saving_started
        return final

    def _write_checkpoint(self, tmp: Path) -> None:
        """Everything of a checkpoint but the RNG files (each process writes its own); the manifest last."""
        state = self.state
        save_model_folder(self.loaded, tmp / "model")
        save_read_settings(tmp / "model", self.settings, tokenizer=self.loaded.tokenizer)  # model/ is also what resume reads the weights from
        ckpt.write_state(tmp, "training_state", {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.state_dict(),
            "run_state": dataclasses.asdict(state)})
        save_recipe(self.recipe, tmp / "recipe.yaml")
        ckpt.write_manifest(tmp, {"step": state.step, "best_val_cer": state.best_val_cer,
                                  "best_step": state.best_step, "saved_at": time.time(),
                                  "train_data": data_fingerprint(self.splits.train)})

    # ------------------------------------------------------------------ the end

    def finish(self) -> dict:
        """final/, the test split scored with the BEST weights, summary.json, curves.png, the summary table."""
        if self.main:
            self.check_run_folder()
            self.save_model(self.output_dir / "final", {"val_cer": self.state.last_val_cer, "step": self.state.step})
        test_scores = self._score_test_split()
        if self.main and test_scores is not None and (self.output_dir / "best").is_dir():
            # The test split is scored with the best weights: its scores belong on best/'s card.
            # Its heatmap stays the one of the best step's validation (the last validation's may differ).
            with writing(self.output_dir / "best"):
                self.write_card(self.output_dir / "best", {
                "val_cer": self.state.best_val_cer, "step": self.state.best_step, "test_cer": test_scores["cer"],
                    "test_wer": test_scores["wer"], "test_exact_match": test_scores["exact_match"]}, heatmap=False)
        self._gather_skipped()
        state = self.state
        summary = {
            "steps": state.step, "train_time_s": state.train_time_s,
            "samples_per_s": state.samples_seen / max(state.train_time_s, 1e-9),
            "final_loss": self.last_loss, "best_step": state.best_step, "best_val_cer": state.best_val_cer,
            "val_cer_before": state.val_cer_before, "val_cer_after": state.last_val_cer,
            "test": test_scores, "skipped_samples": self.skip_report.total, "skipped": self.skip_report.as_dict(),
            "nonfinite_steps": state.nonfinite_steps, "processes": self.world, "output_dir": str(self.output_dir),
            # This process's peak on its GPU (the allocator's, not nvidia-smi's), for memory checks.
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        }
        if self.main:
            with writing(self.output_dir / "summary.json"):
                write_json(self.output_dir / "summary.json", summary)
            curves = plot_curves(self.metrics_log.rows(), self.output_dir / "curves.png")
            if self.wandb_run is not None:
                # final/'s card already drew the last validation's heatmap: log that file, do not draw it again.
                problem = finish_wandb(self.wandb_run, {"curves": curves,
                                                        "confusion_heatmap": self.output_dir / "final" / HEATMAP})
                self.wandb_run = None
                if problem:
                    self.say(f"[yellow]warning: {problem}[/]", highlight=False)
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None
            self.console.print(summary_table(summary))
            if self.skip_report.total:
                self.console.print(f"[yellow]{self.skip_report.summary()}[/]")
        self.accelerator.wait_for_everyone()
        # Last: end_training destroys the process group (no collective after it).
        self.accelerator.end_training()
        return summary

    def _score_test_split(self) -> dict | None:
        """The test split with the best weights (then the final ones are put back); writes test_predictions.jsonl."""
        if not self.splits.test:
            return None
        if self.best_weights is None:  # resumed after the best evaluation
            self.best_weights = self._saved_best_weights()
        final_weights = trainable_state(self.inner.model) if self.best_weights is not None else None
        if self.best_weights is not None:
            load_trainable_state(self.inner.model, self.best_weights)
        result = self.evaluate(self.splits.test)
        if self.main:
            path = self.output_dir / "test_predictions.jsonl"
            lines = "".join(json.dumps({key: row[key] for key in ("id", "reference", "prediction", "cer")},
                                       ensure_ascii=False) + "\n" for row in result.rows)
            with writing(path):
                atomic_write(path, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
        if final_weights is not None:
            load_trainable_state(self.inner.model, final_weights)
        return result.scores

    def _saved_best_weights(self) -> dict | None:
        """The weights of best/ if it holds this run's best step, else None (the final weights score the test)."""
        folder = self.output_dir / "best"
        if self.state.best_step is None or not (folder / BEST_STEP_FILE).is_file():
            return None
        try:
            step = json.loads((folder / BEST_STEP_FILE).read_text(encoding="utf-8")).get("step")
        except (OSError, ValueError, AttributeError):
            step = None
        if step != self.state.best_step:
            self.say(f"[yellow]note: {folder} holds step {step}, not this run's best step "
                     f"{self.state.best_step}; the test split is scored with the final weights[/]")
            return None
        final_weights = trainable_state(self.inner.model)
        restore_from_folder(self.inner.model, folder)
        best = trainable_state(self.inner.model)
        load_trainable_state(self.inner.model, final_weights)
        return best

    def _gather_skipped(self) -> None:
        """Images other processes failed to decode (their train shards) go into this process's report too."""
        if self.world == 1:
            return

        mine = {tuple(pair) for pair in self.state.skipped_examples}
        everyone = {tuple(pair) for pair in gather_object([tuple(pair) for pair in self.state.skipped_examples])}
        for reason, sample_id in sorted(everyone - mine):
            self.skip_report.add(reason, sample_id)


# --------------------------------------------------------------------------- helpers of the run


def _char_weights(confusion: dict, cap: float) -> dict[str, float]:

    return char_weights(ConfusionStats.from_dict(confusion), cap)


def _base_read_settings(recipe: Recipe):
    """The image budget and prompt a pretrained starting model was trained with (its banglaocr.json)."""
    if recipe.model.init != "pretrained":
        return None
    folder = Path(model_source(recipe.model.name_or_path)).expanduser()
    try:
        return load_read_settings(folder) if folder.is_dir() else None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or foreign file: nothing to compare
        return None


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
