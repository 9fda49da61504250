"""The training loop, written out: setup -> fit (with evaluation by generation) -> test -> save.

No Trainer class. accelerate does device placement, mixed precision (autocast + GradScaler for
fp16), DDP (the model goes through `accelerator.prepare`), trackers and collectives; everything
else is here, in the order it happens.

One optimizer step:
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

>>> from banglaocr.config import load_recipe
>>> recipe = load_recipe("cpu_demo", ["train.max_steps=2", "data.synth.n=40"])
>>> recipe.train.samples_per_step()
16
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from banglaocr.config import Recipe, save_recipe
from banglaocr.errors import UserError
from banglaocr.train.loss import IGNORE_INDEX, lm_loss_sum

if TYPE_CHECKING:  # imported inside the functions that use it
    from banglaocr.infer import ReadSettings


class TrainingInterrupted(Exception):
    """Raised after a SIGTERM/SIGINT: a checkpoint was saved; `--resume auto` continues."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        super().__init__(f"stopped by {signal_name} after step {step}; checkpoint saved to {checkpoint}; "
                         "continue with --resume auto")
        self.signal_name = signal_name
        self.exit_code = 130 if signal_name == "SIGINT" else 143


class SupervisedLossModel(torch.nn.Module):
    """The module DDP wraps: model body -> hidden states -> lm_head at supervised positions -> loss sum.

    The model never computes its own loss (no `labels` go in), and full-vocabulary logits are
    never built for the prompt and image positions: memory is O(answer tokens x vocab).
    """

    def __init__(self, model: torch.nn.Module, focal_gamma: float, label_smoothing: float):
        super().__init__()
        self.model = model
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing

    def core(self) -> torch.nn.Module:
        """The Qwen3VLForConditionalGeneration (with LoRA layers injected, under peft)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, inputs: dict, labels: torch.Tensor, token_weights: torch.Tensor | None = None,
                confusion_weight: float = 0.0) -> torch.Tensor:
        core = self.core()
        hidden = core.model(**inputs).last_hidden_state  # the final norm is already applied
        return lm_loss_sum(hidden, labels, core.lm_head, token_weights=token_weights,
                           confusion_weight=confusion_weight, focal_gamma=self.focal_gamma,
                           label_smoothing=self.label_smoothing).loss_sum


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


def _base_read_settings(recipe: Recipe) -> ReadSettings | None:
    """The image budget and prompt a pretrained starting model was trained with (its banglaocr.json)."""
    from banglaocr.infer import load_read_settings
    from banglaocr.model.shipped import model_source

    if recipe.model.init != "pretrained":
        return None
    folder = Path(model_source(recipe.model.name_or_path)).expanduser()
    try:
        return load_read_settings(folder) if folder.is_dir() else None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or foreign file: nothing to compare
        return None


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


# --------------------------------------------------------------------------- setup helpers


def _mixed_precision(precision: str) -> str:
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("train.precision=fp16 needs a CUDA GPU; use fp32 (or bf16) on the CPU")
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError("this GPU has no bf16 (e.g. a T4): use train.precision=fp16")
    return {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision]


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _check_output_dir(output_dir: Path, resuming: bool) -> None:
    if resuming:
        return
    # metrics.jsonl too: a run stopped before its first checkpoint still left its log, which a fresh run
    # would silently delete.
    if (output_dir / "checkpoints").is_dir() and any((output_dir / "checkpoints").iterdir()) or \
            (output_dir / "final").exists() or (output_dir / "metrics.jsonl").exists():
        raise UserError(f"{output_dir} already holds a training run; continue it with --resume auto, "
                        "or choose another --output-dir")


def _batch_token_weights(batch: dict, char_weights: dict[str, float] | None) -> torch.Tensor | None:
    """[B, T] weights laid out like `labels`: each supervised token gets its characters' weight."""
    if not char_weights:
        return None
    from banglaocr.train.confusion import token_weights

    labels = batch["labels"]
    weights = torch.ones(labels.shape, dtype=torch.float32)
    for row, (text, offsets) in enumerate(zip(batch["texts"], batch["answer_offsets"])):
        positions = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        values = token_weights(text, offsets, char_weights)
        if len(values) != len(positions):  # the collator's contract; a mismatch would misalign weights
            raise RuntimeError(f"{len(values)} token weights for {len(positions)} supervised tokens")
        weights[row, positions] = torch.tensor(values, dtype=torch.float32)
    return weights


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().to("cpu", copy=True).contiguous()
            for name, param in model.named_parameters() if param.requires_grad}


def _load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise UserError(f"checkpoint does not match the model (e.g. {missing[0]}); was the recipe changed?")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


# --------------------------------------------------------------------------- the run


def run_training(recipe: Recipe, output_dir: str | Path | None = None, resume: str | None = None,
                 console: Any = None) -> dict:
    """Train as `recipe` says; return the summary (also written to `output_dir/summary.json`)."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from rich.console import Console
    from safetensors.torch import load_file, save_file

    from banglaocr.data.collate import Collator, finish_batch_on_device
    from banglaocr.data.sources import (SkipReport, UnreadableImage, load_splits, open_image, resolve_source,
                                        unreadable_reason)
    from banglaocr.infer import ReadSettings, generate_texts, save_read_settings
    from banglaocr.metrics import aggregate_scores, sample_scores
    from banglaocr.model.factory import load_model, save_model_folder, trainable_parameter_summary
    from banglaocr.train import checkpoint as ckpt
    from banglaocr.train.batches import BatchStream, SkippingCollator, WordImages
    from banglaocr.train.confusion import ConfusionStats, char_weights
    from banglaocr.train.curriculum import (CurriculumState, describe_stage, scaled_augment, should_advance,
                                            stage_indices, stage_seed)
    from banglaocr.train.optim import build_optimizer
    from banglaocr.train.progress import MetricsLog, make_progress, plot_curves, summary_table
    from banglaocr.train.schedule import build_scheduler

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards" bars would break the live display
    if output_dir is not None:  # the saved recipe names the folder the run really wrote to
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, output_dir=str(output_dir)))
    cfg = recipe.train
    output_dir = Path(cfg.output_dir)
    console = console or Console()
    resume_from = ckpt.resolve_resume(resume, output_dir)
    _check_output_dir(output_dir, resuming=resume is not None)

    use_tensorboard = _tensorboard_available()
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.precision),
                              log_with="tensorboard" if use_tensorboard else None, project_dir=str(output_dir))
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    say = console.print if main else (lambda *a, **k: None)
    if recipe.model.device_map is not None and world > 1:
        raise UserError("model.device_map=auto splits ONE process over the GPUs; do not combine it with "
                        "multi-process (DDP) launches - use one or the other")

    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, output_dir / "recipe.yaml")
    set_seed(cfg.seed)

    # ---- data: rendered / downloaded once (main process first), then read by everyone
    with accelerator.main_process_first():
        data_cfg = resolve_source(recipe.data, output_dir)
        splits = load_splits(data_cfg)
    say(f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test from "
        f"{data_cfg.source}; {splits.skipped.summary()}")

    # ---- model
    set_seed(cfg.seed)  # the same random init on every process, whatever the data code drew
    loaded = load_model(recipe.model, recipe.lora, precision=cfg.precision)
    tokenizer = loaded.tokenizer
    trainable, total = trainable_parameter_summary(loaded.model)
    say(f"model: {recipe.model.name_or_path} ({recipe.model.init}), {total / 1e6:.2f} M parameters, "
        f"{trainable / 1e6:.2f} M trainable ({'LoRA' if loaded.is_peft else 'full fine-tune'})")
    wrapper = SupervisedLossModel(loaded.model, recipe.loss.focal_gamma, recipe.loss.label_smoothing)
    optimizer = build_optimizer(wrapper.model, cfg)
    scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.scheduler)
    state = RunState()
    if resume_from is not None:
        _load_trainable_state(wrapper.model, load_file(str(resume_from / "trainable.safetensors")))
    if recipe.model.device_map is None:
        wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
        device = accelerator.device
    else:
        optimizer = accelerator.prepare(optimizer)
        device = next(wrapper.parameters()).device
    inner = accelerator.unwrap_model(wrapper)
    augment_generator = torch.Generator().manual_seed(cfg.seed * 7919 + 17 + rank)

    if resume_from is not None:
        saved = torch.load(resume_from / "training_state.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if accelerator.scaler is not None and saved.get("scaler") is not None:
            accelerator.scaler.load_state_dict(saved["scaler"])
        state = RunState(**saved["run_state"])
        rng_file = resume_from / f"rng-rank{rank}.pt"
        if rng_file.is_file():
            ckpt.restore_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False), augment_generator)
        say(f"resumed from {resume_from} at step {state.step}")

    settings = ReadSettings(image=recipe.data.image, prompt=recipe.data.prompt,
                            max_new_tokens=recipe.eval.max_new_tokens)
    base_settings = _base_read_settings(recipe)
    if base_settings is not None and (base_settings.image, base_settings.prompt) != (settings.image, settings.prompt):
        # Legal (a new budget is a new task), but usually an oversight that costs the base's skill.
        say(f"[yellow]note: {recipe.model.name_or_path} was trained with image {base_settings.image} and prompt "
            f"'{base_settings.prompt}'; this recipe uses image {settings.image} and prompt '{settings.prompt}'[/]")
    metrics_log = MetricsLog(output_dir / "metrics.jsonl")
    if main:
        if resume_from is not None:
            metrics_log.truncate_after(state.step)
        elif metrics_log.path.exists():
            metrics_log.path.unlink()
    if use_tensorboard:
        accelerator.init_trackers("tensorboard")
    skip_report = SkipReport()
    skip_report.merge(splits.skipped)

    def count_unreadable(sample_id: str, error: str) -> None:
        """Count an image that failed to decode ONCE per run: later epochs and evaluations meet it
        again, and a resumed run restores what was counted before the interruption."""
        reason = unreadable_reason(error)
        if (reason, sample_id) in counted_unreadable:
            return
        counted_unreadable.add((reason, sample_id))
        state.skipped_examples.append([reason, sample_id])  # saved in checkpoints
        state.skipped_samples = len(state.skipped_examples)
        skip_report.add(reason, sample_id)

    counted_unreadable = {tuple(pair) for pair in state.skipped_examples}
    for reason, sample_id in state.skipped_examples:  # counted before a resume
        skip_report.add(reason, sample_id)

    # ---- data stream of this process
    train_records = splits.train
    # Curriculum (data.curriculum): each stage streams ITS samples with its own seed from micro-batch 0
    # (state.batches_consumed counts within the stage), so the data after a stage change depends on the
    # stage alone and a checkpoint (stage + batches consumed) resumes exactly. Every stage's selection
    # is made now: a stage that selects nothing fails here, not hours into the run.
    stages = recipe.data.curriculum

    def announce_stage() -> None:
        say(describe_stage(stages[curriculum.stage], curriculum.stage, len(stages),
                           len(stage_subsets[curriculum.stage])))

    if stages is not None:
        stage_subsets = [stage_indices(train_records, stage, index) for index, stage in enumerate(stages)]
        curriculum = CurriculumState.from_dict(state.curriculum, stages)
        state.curriculum = curriculum.as_dict()
        announce_stage()

    def open_stream():
        """This process's micro-batches from `state.batches_consumed` on (of the current stage's samples)."""
        if stages is None:
            records, seed = train_records, cfg.seed
        else:
            records = [train_records[i] for i in stage_subsets[curriculum.stage]]
            seed = stage_seed(cfg.seed, curriculum.stage)
        stream = BatchStream(lengths=[len(r.text) for r in records], batch_size=cfg.batch_size,
                             seed=seed, group_by_length=cfg.group_by_length, rank=rank, world_size=world)
        loader = torch.utils.data.DataLoader(
            WordImages(records, recipe.data.image),
            batch_sampler=stream.iterate(state.batches_consumed),
            collate_fn=SkippingCollator(Collator(tokenizer, recipe.data.prompt, train=True)),
            num_workers=recipe.data.num_workers, pin_memory=torch.cuda.is_available(),
            # Its own generator: creating the iterator draws a worker base seed, which would otherwise come
            # from the global torch RNG that dropout uses - right after a resume restored it (not exact).
            generator=torch.Generator().manual_seed(seed),
        )
        return iter(loader)

    def stage_augment():
        """The augmentation of the current stage (`augment` itself without a curriculum)."""
        if stages is None:
            return recipe.augment
        return scaled_augment(recipe.augment, stages[curriculum.stage].augment_strength)

    batches = open_stream()
    augment_cfg = stage_augment()

    # ---- evaluation by generation (sharded over processes, gathered on all)
    def evaluate(records, max_samples=None) -> tuple[dict, list[dict]]:
        chosen = records[:max_samples] if max_samples else records
        mine = chosen[rank::world]
        images, kept = [], []
        for record in mine:
            try:
                images.append(open_image(record))
                kept.append(record)
            except UnreadableImage as err:
                count_unreadable(record.id, str(err))
        with accelerator.autocast():
            predictions = generate_texts(inner.model, tokenizer, images, settings,
                                         batch_size=recipe.eval.batch_size, num_beams=recipe.eval.num_beams,
                                         device=device)
        rows = [{"id": r.id, "reference": r.text, "prediction": p, **sample_scores(r.text, p)}
                for r, p in zip(kept, predictions)]
        if world > 1:
            rows = gather_object(rows)
        rows.sort(key=lambda row: row["id"])
        return aggregate_scores(rows), rows

    def save_model(folder: Path) -> None:
        with ckpt.atomic_folder(folder) as tmp:
            save_model_folder(loaded, tmp)
            save_read_settings(tmp, settings)
            save_recipe(recipe, tmp / "recipe.yaml")

    def save_checkpoint() -> Path:
        final = output_dir / "checkpoints" / f"step-{state.step}"
        tmp = final.parent / f".tmp-{final.name}"
        if main:
            ckpt.fresh_tmp_folder(final)
        accelerator.wait_for_everyone()
        torch.save(ckpt.capture_rng_state(augment_generator), tmp / f"rng-rank{rank}.pt")
        accelerator.wait_for_everyone()
        if main:
            save_model_folder(loaded, tmp / "model")
            save_read_settings(tmp / "model", settings)
            save_file(_trainable_state(inner.model), str(tmp / "trainable.safetensors"))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                        "run_state": state.__dict__}, tmp / "training_state.pt")
            save_recipe(recipe, tmp / "recipe.yaml")
            ckpt.write_json(tmp / "state.json", {"step": state.step, "best_val_cer": state.best_val_cer,
                                                 "best_step": state.best_step, "saved_at": time.time()})
            ckpt.commit_folder(tmp, final)
            ckpt.rotate_checkpoints(final.parent, cfg.keep_last)
        accelerator.wait_for_everyone()
        return final

    def log_row(row: dict) -> None:
        if main:
            metrics_log.write(row)
        if use_tensorboard:
            accelerator.log({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))},
                            step=row["step"])

    # ---- fit
    accum = cfg.grad_accum_steps
    params = [p for p in wrapper.parameters() if p.requires_grad]
    last_good_batch = None
    window_loss = torch.zeros((), device=device, dtype=torch.float64)
    window_tokens, window_samples, window_start = 0, 0, time.perf_counter()
    last_loss: float | None = None
    best_state: dict | None = None
    char_weight_table = None
    if state.confusion and recipe.loss.confusion_weight > 0:
        char_weight_table = char_weights(ConfusionStats.from_dict(state.confusion), recipe.loss.confusion_cap)
    last_saved_step = state.step if resume_from is not None else -1

    def validate(loss: float | None, lr: float) -> None:
        """Score the validation split by generation: log it, track the best model (saved as best/)."""
        nonlocal best_state, char_weight_table
        scores, rows = evaluate(splits.val, recipe.eval.max_samples)
        state.last_val_cer = scores["cer"]
        confusion = ConfusionStats().update([r["reference"] for r in rows], [r["prediction"] for r in rows])
        state.confusion = confusion.to_dict()
        if recipe.loss.confusion_weight > 0:
            char_weight_table = char_weights(confusion, recipe.loss.confusion_cap)
        row = {"step": state.step, "loss": loss, "lr": lr,
               **{f"val_{k}": scores[k] for k in ("cer", "mean_cer", "wer", "ger", "exact_match",
                                                  "empty_predictions", "n")}}
        log_row(row)
        progress.update(task, val_cer=f"{scores['cer']:.3f}")
        say(f"step {state.step}: val CER {scores['cer']:.4f}  WER {scores['wer']:.4f}  "
            f"exact {scores['exact_match']:.3f}  empty {scores['empty_predictions']}  "
            f"(e.g. '{rows[0]['reference']}' -> '{rows[0]['prediction']}')" if rows else "")
        if state.best_val_cer is None or scores["cer"] < state.best_val_cer:
            state.best_val_cer, state.best_step = scores["cer"], state.step
            best_state = _trainable_state(inner.model)
            if main:
                save_model(output_dir / "best")
                best_file = output_dir / "checkpoints" / "best.safetensors"
                best_file.parent.mkdir(parents=True, exist_ok=True)
                save_file(best_state, str(best_file) + ".tmp")
                os.replace(str(best_file) + ".tmp", best_file)  # atomic: never a half-written file
        wrapper.train()

    progress = make_progress(console)
    task = progress.add_task("train", total=cfg.max_steps, completed=state.step, loss="-",
                             lr=f"{scheduler.get_last_lr()[0]:.2e}", speed="-",
                             val_cer=f"{state.last_val_cer:.3f}" if state.last_val_cer is not None else "-")
    run_start = time.perf_counter() - state.train_time_s
    if recipe.eval.before_training and splits.val and state.step == 0:
        # The starting model's score: the "before" of a fine-tune (step 0 of metrics.jsonl).
        validate(None, scheduler.get_last_lr()[0])
        state.val_cer_before = state.last_val_cer
    wrapper.train()

    with StopSignal() as stop, (progress if main else contextlib.nullcontext()):
        while state.step < cfg.max_steps:
            micro = []
            for _ in range(accum):
                batch = next(batches)
                state.batches_consumed += world
                for sample_id, reason in batch["skipped"]:
                    count_unreadable(sample_id, reason)
                if "input_ids" in batch:
                    last_good_batch = batch
                    micro.append((batch, 1.0))
                elif last_good_batch is not None:
                    # Every sample of this micro-batch failed to decode: run a zero-weight pass so
                    # all processes still make the same number of collective calls.
                    micro.append((last_good_batch, 0.0))
            local_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) * w for b, w in micro)
            flags = torch.tensor([float(local_tokens), 1.0 if stop.received else 0.0], device=device)
            flags = accelerator.reduce(flags, reduction="sum") if world > 1 else flags
            step_tokens, stop_now = float(flags[0]), bool(flags[1] > 0)  # the one sync point of the step
            if stop_now:
                # The micro-batches just drawn belong to a step that never runs: give them back, so the
                # resumed run draws them again (nothing skipped).
                state.batches_consumed -= accum * world
                path = save_checkpoint() if last_saved_step != state.step else \
                    output_dir / "checkpoints" / f"step-{state.step}"
                raise TrainingInterrupted(stop.received or "SIGTERM", state.step, path)
            if step_tokens == 0:
                raise UserError("a training step has no supervised tokens (every image unreadable?)")

            use_confusion = char_weight_table is not None and state.step >= recipe.loss.confusion_start_step
            scale = world / step_tokens
            step_loss = torch.zeros((), device=device, dtype=torch.float64)
            for index, (batch, weight) in enumerate(micro):
                last = index == len(micro) - 1
                sync = contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(wrapper)
                with sync:
                    with accelerator.autocast():
                        inputs = finish_batch_on_device(batch, device, augment_cfg, augment_generator)
                        labels = batch["labels"].to(device, non_blocking=True)
                        token_weights = _batch_token_weights(batch, char_weight_table) if use_confusion else None
                        if token_weights is not None:
                            token_weights = token_weights.to(device)
                        loss_sum = wrapper(inputs, labels, token_weights,
                                           recipe.loss.confusion_weight if use_confusion else 0.0)
                    accelerator.backward(loss_sum * (scale * weight))
                step_loss += loss_sum.detach().double() * weight
                window_samples += len(batch["texts"]) * world if weight else 0

            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf)
            if accelerator.scaler is not None:
                optimizer.step()  # the GradScaler skips the update itself when gradients overflowed
                skipped = accelerator.optimizer_step_was_skipped
            else:
                skipped = not bool(torch.isfinite(grad_norm))  # CPU-GPU sync (cheap next to the step)
                if not skipped:
                    optimizer.step()
            step_lr = scheduler.get_last_lr()[0]  # the rate this update used (logged below)
            with warnings.catch_warnings():
                # The schedule counts optimizer steps, skipped ones included (so the rate is a function of
                # the step alone); torch warns when a skipped first step precedes the scheduler's step.
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if skipped:
                state.nonfinite_steps += 1
                state.consecutive_nonfinite += 1
                if state.consecutive_nonfinite >= cfg.max_nonfinite_steps:
                    raise UserError(
                        f"stopped at step {state.step}: {state.consecutive_nonfinite} optimizer steps in a row had "
                        "non-finite gradients (fp16 overflow? try train.precision=bf16 on GPUs that have it, a "
                        "lower train.lr, or check the data)")
            else:
                state.consecutive_nonfinite = 0
            window_loss += step_loss
            window_tokens += step_tokens

            # ---- curriculum: smoothed loss and stage change, the same on every process
            stage_row = {}
            if stages is not None:
                # The step's mean token loss over ALL processes (one scalar all-reduce per step, only with a
                # curriculum): every process sees the same numbers, so all change stage at the same step.
                # Per step rather than per log window: the decision depends neither on train.log_steps nor
                # on where a resumed run's first log window starts, and the state is whole at every step.
                # Reading it waits for the step to finish on the device, as the next step's flag reduce would.
                total_step = accelerator.reduce(step_loss.clone(), reduction="sum") if world > 1 else step_loss
                curriculum = curriculum.after_step(float(total_step) / step_tokens)
                stage_row = {"curriculum_stage": curriculum.stage, "curriculum_loss": curriculum.loss_ema}
                if should_advance(stages, curriculum):
                    smoothed = f"{curriculum.loss_ema:.4f}" if curriculum.loss_ema is not None else "-"
                    say(f"step {state.step}: curriculum stage [{curriculum.stage}] done after {curriculum.steps} "
                        f"steps (smoothed loss {smoothed})")
                    curriculum = curriculum.advanced()
                    state.batches_consumed = 0
                    batches = open_stream()
                    augment_cfg = stage_augment()
                    announce_stage()
                state.curriculum = curriculum.as_dict()  # before any checkpoint of this step

            # ---- log
            if cfg.log_steps and state.step % cfg.log_steps == 0 or state.step == cfg.max_steps:
                total_loss = accelerator.reduce(window_loss.clone(), reduction="sum") if world > 1 else window_loss
                elapsed = time.perf_counter() - window_start
                last_loss = float(total_loss) / max(window_tokens, 1.0)
                speed = window_samples / max(elapsed, 1e-9)
                row = {"step": state.step, "loss": last_loss, "lr": step_lr,
                       "samples_per_s": speed, "elapsed_s": time.perf_counter() - run_start, **stage_row}
                log_row(row)
                progress.update(task, loss=f"{last_loss:.4f}", lr=f"{row['lr']:.2e}", speed=f"{speed:.1f}")
                state.samples_seen += window_samples
                window_loss.zero_()
                window_tokens, window_samples, window_start = 0, 0, time.perf_counter()
            progress.update(task, completed=state.step)

            # ---- evaluate by generation
            final_step = state.step == cfg.max_steps
            if splits.val and (cfg.eval_steps and state.step % cfg.eval_steps == 0 or final_step):
                validate(last_loss, step_lr)

            state.train_time_s = time.perf_counter() - run_start
            if cfg.save_steps and state.step % cfg.save_steps == 0 or final_step:
                save_checkpoint()
                last_saved_step = state.step

    # ---- final model, test split (with the best weights), summary
    if main:
        save_model(output_dir / "final")
    test_scores = None
    best_file = output_dir / "checkpoints" / "best.safetensors"
    if best_state is None and best_file.is_file():  # resumed after the best evaluation
        best_state = load_file(str(best_file))
    if splits.test:
        final_weights = _trainable_state(inner.model) if best_state is not None else None
        if best_state is not None:
            _load_trainable_state(inner.model, best_state)
        test_scores, test_rows = evaluate(splits.test)
        if main:
            with (output_dir / "test_predictions.jsonl").open("w", encoding="utf-8") as handle:
                for row in test_rows:
                    handle.write(json.dumps(
                        {"id": row["id"], "reference": row["reference"], "prediction": row["prediction"],
                         "cer": row["cer"]}, ensure_ascii=False) + "\n")
        if final_weights is not None:
            _load_trainable_state(inner.model, final_weights)
    if world > 1:  # images other processes failed to decode (train shards, eval shards): report them too
        mine = {tuple(pair) for pair in state.skipped_examples}
        everyone = {tuple(pair) for pair in gather_object([tuple(pair) for pair in state.skipped_examples])}
        for reason, sample_id in sorted(everyone - mine):
            skip_report.add(reason, sample_id)
    summary = {
        "steps": state.step, "train_time_s": state.train_time_s,
        "samples_per_s": state.samples_seen / max(state.train_time_s, 1e-9),
        "final_loss": last_loss, "best_step": state.best_step, "best_val_cer": state.best_val_cer,
        "val_cer_before": state.val_cer_before, "val_cer_after": state.last_val_cer,
        "test": test_scores, "skipped_samples": skip_report.total, "skipped": skip_report.as_dict(),
        "nonfinite_steps": state.nonfinite_steps, "processes": world, "output_dir": str(output_dir),
    }
    if main:
        ckpt.write_json(output_dir / "summary.json", summary)
        plot_curves(metrics_log.rows(), output_dir / "curves.png")
        console.print(summary_table(summary))
        if skip_report.total:
            console.print(f"[yellow]{skip_report.summary()}[/]")
    accelerator.wait_for_everyone()
    # Last: besides closing the trackers, end_training destroys the process group (no collective after it).
    accelerator.end_training()
    return summary
