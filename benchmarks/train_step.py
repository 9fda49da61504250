"""One training step: banglaocr's path against a plain transformers baseline, side by side.

Both variants train the SAME model (one LoRA r16 model on the language model, one AdamW) on the
SAME words (bundled words rendered with the bundled fonts, fixed seed), batch for batch:

- baseline: what a user of `AutoProcessor` + `model(**batch, labels=labels)` gets. Images go
  through Qwen3-VL-2B's image processor at its default size (min 65,536 pixels: a word crop
  becomes >= 64 visual tokens); the model computes logits for EVERY position and its own
  cross-entropy; backward; AdamW step.
- banglaocr: images resized to the image budget (height 64, width <= 384 - what scan-dims
  recommends for these words), patchified on the device (`finish_batch_on_device`);
  `SupervisedLossModel` applies lm_head to the supervised positions only and takes the loss
  from three numbers per row (`logit_row_stats`); loss sum / supervised token count; backward;
  AdamW step. The vision patch embedding runs as the matmul it is, and under bf16 the LoRA
  inputs are left to autocast (`skip_lora_input_casts`), as `banglaocr train` does.
- `--breakdown` adds each lever alone (budget images with full logits) and banglaocr's step with
  each of its last three changes taken back (Conv3d, peft's casts, log_softmax) and with all three.

The token ids of both come from banglaocr's `training_batch` with each variant's own image grid,
so the text is identical (the processor path cannot be built without torchvision; this
assembly is token-for-token the processor's output, see the collator tests). The labels are
the same too: answer + `<|im_end|>`. Neither variant clips gradients.

Timing: one process, the variants interleaved A B, B A, ... (drift hits both), warm-up steps
first, then the median. A step starts from the collated batch on the host (the processor's
or the Collator's output, which a DataLoader worker would make) and ends after the optimizer
step; the data-side cost is printed separately.

Memory: the peak memory a step ADDS. On the CPU each variant runs in its own subprocess:
peak resident memory (VmHWM, reset through /proc/self/clear_refs just before the first step)
minus resident memory before the first step, over the warm-up steps plus two more - it includes
what the first step allocates once (optimizer state, the same for both variants). On CUDA:
torch.cuda.max_memory_allocated during a timed step minus the memory allocated before it.

Sanity: on the same (budget) images, in eval mode, the model's own loss and the
supervised-position loss are the same mean cross-entropy over the supervised tokens; the line
prints both and the LoRA gradient difference.

Read the last line: `speedup=X.XX memory_ratio=Y.YY` (baseline step time / banglaocr step
time, banglaocr added peak / baseline added peak).

    python benchmarks/train_step.py                 # tiny Qwen3-VL, real 151k vocabulary, fp32, CPU
    python benchmarks/train_step.py --breakdown     # + budget images with full logits, and vice versa
    python benchmarks/train_step.py --real-2b       # real 2B shape, random weights, bf16 (~10 GB RAM)
    python benchmarks/train_step.py --device cuda   # same on a GPU, bf16
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

import _real2b  # noqa: F401 - also puts the checkout on sys.path
from banglaocr.config import DataConfig, ImageConfig, LoraConfig, ModelConfig, TinyModelSpec
from banglaocr.data.collate import MODEL_INPUT_KEYS, Collator, finish_batch_on_device, training_batch
from banglaocr.data.pixels import resize_to_budget
from banglaocr.model.factory import core_model, load_model, skip_lora_input_casts, trainable_parameter_summary
from banglaocr.model.patch_embed import use_matmul_patch_embedding
from banglaocr.model.tokenizers import build_qwen_tokenizer, special_token_ids
from banglaocr.train.supervised_model import SupervisedLossModel
from banglaocr.train.loss import gather_supervised, supervised_token_count

# hidden 64, 2 text + 2 vision layers: with the real vocabulary, 9.7 M of its 10 M parameters are
# the embeddings - the setting where full-sequence logits dominate, as they do for the 2B model's
# lm_head at long sequences.
TINY = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256,
                     vision_depth=2, vision_hidden_size=64, vision_heads=4, vision_intermediate_size=256,
                     tokenizer="qwen")
BATCHES = 4  # distinct batches, cycled: every variant sees batch i % BATCHES at step i
PROBE_EXTRA_STEPS = 2  # memory probes: warm-up steps + this many


@dataclass(frozen=True)
class Variant:
    images: str  # "processor": the image processor's default size; "budget": banglaocr's image budget
    # "full": the model's own loss over all logits; "supervised": SupervisedLossModel (lm_head on the
    # supervised rows, `logit_row_stats`); "supervised-log-softmax": the same rows through torch's
    # float32 log_softmax + gather (banglaocr's loss before `logit_row_stats`)
    loss: str
    patch: str = "matmul"  # the vision patch embedding: "conv" (Qwen3-VL's Conv3d) or "matmul" (banglaocr's)
    casts: str = "autocast"  # LoRA inputs: "peft" (peft copies them to float32 first) or "autocast" (banglaocr's)


VARIANTS = {
    "baseline": Variant("processor", "full", "conv", "peft"),
    "banglaocr": Variant("budget", "supervised", "matmul", "autocast"),
}
BREAKDOWN = {  # each lever alone, and banglaocr's step before the last three changes
    "budget+full": Variant("budget", "full", "conv", "peft"),
    "banglaocr+conv": Variant("budget", "supervised", "conv", "autocast"),  # the Conv3d patch embedding back
    "banglaocr+peft-casts": Variant("budget", "supervised", "matmul", "peft"),  # peft's input casts back
    "banglaocr+log-softmax": Variant("budget", "supervised-log-softmax", "matmul", "autocast"),
    "banglaocr-before": Variant("budget", "supervised-log-softmax", "conv", "peft"),  # all three back
}
LEVERS = {
    "banglaocr+conv": "patch embedding as a matmul (instead of Qwen3-VL's Conv3d)",
    "banglaocr+peft-casts": "LoRA inputs left to autocast (instead of peft's float32 copies)",
    "banglaocr+log-softmax": "loss from logit_row_stats (instead of a float32 log_softmax over [N, vocab])",
    "banglaocr-before": "all three changes",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-2b", action="store_true", help="real Qwen3-VL-2B shape, random weights")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                        help="default: fp32 for the tiny model on the CPU, else bf16")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 (4 with --real-2b)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 10; 4 with --real-2b)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default 2; 1 with --real-2b)")
    parser.add_argument("--height", type=int, default=64, help="banglaocr's image budget: height")
    parser.add_argument("--max-width", type=int, default=384, help="banglaocr's image budget: max width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown", action="store_true", help="also time each lever alone")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: measure one variant's memory
    args = parser.parse_args(argv)
    big = args.real_2b
    args.batch_size = args.batch_size or (4 if big else 8)
    args.steps = args.steps or (4 if big else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if big else 2)
    args.precision = args.precision or ("bf16" if big or args.device != "cpu" else "fp32")
    return args


# --------------------------------------------------------------------------- setup


@dataclass
class Setup:
    wrapper: SupervisedLossModel
    optimizer: torch.optim.Optimizer
    device: torch.device
    autocast_dtype: torch.dtype | None
    batches: dict[str, list[dict]]  # "processor" / "budget" -> collated batches (host side)
    prep_ms: dict[str, float]
    description: str


def processor_default():
    """Qwen3-VL-2B's image processor as `AutoProcessor` configures it (the PIL one: no torchvision here)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                    size={"shortest_edge": 65536, "longest_edge": 16777216})


def make_batches(tokenizer, prompt: str, words: list[str], images: list, batch_size: int,
                 budget: ImageConfig) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """The same words collated both ways; also the median time each way takes (DataLoader side)."""
    processor = processor_default()
    collate = Collator(tokenizer, prompt, train=True)
    out = {"processor": [], "budget": []}
    times = {"processor": [], "budget": []}
    for start in range(0, len(words), batch_size):
        chunk_words, chunk_images = words[start:start + batch_size], images[start:start + batch_size]
        t0 = time.perf_counter()
        pixels = processor(chunk_images, return_tensors="pt")
        batch = {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"],
                 **training_batch(tokenizer, prompt, chunk_words, pixels["image_grid_thw"])}
        t1 = time.perf_counter()
        budgeted = collate([{"image": resize_to_budget(image, budget), "text": word}
                            for image, word in zip(chunk_images, chunk_words)])
        t2 = time.perf_counter()
        out["processor"].append(batch)
        out["budget"].append(budgeted)
        times["processor"].append((t1 - t0) * 1e3)
        times["budget"].append((t2 - t1) * 1e3)
    return out, {key: statistics.median(value) for key, value in times.items()}


def setup(args) -> Setup:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    tokenizer = build_qwen_tokenizer()
    lora = LoraConfig(r=16, alpha=32)
    if args.real_2b:
        config = _real2b.real_2b_config(special_token_ids(tokenizer))
        loaded = _real2b.build_model(config, tokenizer, ModelConfig(name_or_path="random-qwen3-vl-2b"), lora,
                                     args.precision, device)
        name = "Qwen3-VL-2B shape (random weights)"
    else:
        loaded = load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=TINY), lora, precision=args.precision)
        loaded.model.to(device)
        name = (f"tiny Qwen3-VL (hidden {TINY.hidden_size}, {TINY.num_layers}+{TINY.vision_depth} layers, "
                f"real {len(tokenizer):,}-token vocabulary)")
    trainable, total = trainable_parameter_summary(loaded.model)
    wrapper = SupervisedLossModel(loaded.model, focal_gamma=0.0, label_smoothing=0.0)
    optimizer = torch.optim.AdamW([p for p in wrapper.parameters() if p.requires_grad], lr=2e-4)

    # Unshaped words (no RAQM, e.g. on a bare GPU machine) have the usual crop sizes: fine for timing.
    words, images, shaped = _real2b.benchmark_words(args.batch_size * BATCHES, args.seed, allow_basic_layout=True)
    prompt = DataConfig(source="synth").prompt
    budget = ImageConfig(height=args.height, max_width=args.max_width)
    batches, prep_ms = make_batches(tokenizer, prompt, words, images, args.batch_size, budget)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else f" ({torch.cuda.get_device_name()})"
    description = (f"{name}, {args.precision}, {device.type}{threads}\n"
                   f"model: {total / 1e6:.2f} M parameters; LoRA r{lora.r} on the language model: "
                   f"{trainable / 1e6:.2f} M trainable\n"
                   f"data: {len(words)} bundled words (seed {args.seed}), bundled fonts, batch {args.batch_size}, "
                   f"{BATCHES} batches cycled")
    return Setup(wrapper, optimizer, device, torch.bfloat16 if args.precision == "bf16" else None,
                 batches, prep_ms, description)


# --------------------------------------------------------------------------- the step


def model_inputs(s: Setup, variant: Variant, batch: dict) -> dict:
    if variant.images == "budget":
        return finish_batch_on_device(batch, s.device)  # normalise + patchify on the device
    return {key: batch[key].to(s.device, non_blocking=True) for key in MODEL_INPUT_KEYS}


def log_softmax_loss_sum(s: Setup, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """The supervised rows' cross-entropy through a float32 log_softmax over [N, vocab] + gather."""
    core = core_model(s.wrapper.model)
    rows, targets, _ = gather_supervised(core.model(**inputs).last_hidden_state, labels)
    log_probs = torch.nn.functional.log_softmax(core.lm_head(rows).float(), dim=-1)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).sum()


def forward_loss(s: Setup, variant: Variant, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the supervised tokens, computed the variant's way."""
    with torch.autocast(s.device.type, dtype=s.autocast_dtype or torch.float32,
                        enabled=s.autocast_dtype is not None):
        if variant.loss == "full":
            # The plain way: logits [B, T, vocab] for every position, the model's own CE.
            return s.wrapper.model(**inputs, labels=labels).loss
        if variant.loss == "supervised-log-softmax":
            return log_softmax_loss_sum(s, inputs, labels) / supervised_token_count(labels)
        return s.wrapper(inputs, labels) / supervised_token_count(labels)


def configure(s: Setup, variant: Variant) -> None:
    """The variant's patch embedding and LoRA input casts (flags on the shared model; not timed)."""
    use_matmul_patch_embedding(s.wrapper.model, enabled=variant.patch == "matmul")  # swaps the class only
    skip_lora_input_casts(s.wrapper.model, skip=variant.casts == "autocast" and s.autocast_dtype is not None)


def train_step(s: Setup, variant: Variant, batch: dict) -> float:
    inputs = model_inputs(s, variant, batch)
    labels = batch["labels"].to(s.device, non_blocking=True)
    loss = forward_loss(s, variant, inputs, labels)
    loss.backward()
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())  # a sync point on CUDA: the step is really over when the clock stops


def sanity_check(s: Setup) -> str:
    """Both loss definitions on the same budget images: the same mean CE, the same LoRA gradients."""
    batch = s.batches["budget"][0]
    labels = batch["labels"].to(s.device)
    results = []
    s.wrapper.eval()  # no LoRA dropout: both passes see the same function
    for variant in (Variant("budget", "full"), Variant("budget", "supervised")):
        configure(s, variant)
        loss = forward_loss(s, variant, model_inputs(s, variant, batch), labels)
        loss.backward()
        grads = {n: p.grad.detach().float().clone() for n, p in s.wrapper.named_parameters() if p.grad is not None}
        s.optimizer.zero_grad(set_to_none=True)
        results.append((float(loss.detach()), grads))
    s.wrapper.train()
    (full, full_grads), (supervised, supervised_grads) = results
    grad_diff = max(float((full_grads[n] - supervised_grads[n]).abs().max()) for n in full_grads)
    grad_max = max(float(g.abs().max()) for g in full_grads.values())
    tokens = int(supervised_token_count(labels))
    agree = abs(full - supervised) <= 1e-4 * abs(full) + 1e-6 if s.autocast_dtype is None else \
        abs(full - supervised) <= 1e-2 * abs(full)
    return (f"sanity (same budget images, eval mode, {tokens} supervised tokens): model's own loss {full:.6f}, "
            f"supervised-position loss {supervised:.6f}, |diff| {abs(full - supervised):.1e}; LoRA grads max |diff| "
            f"{grad_diff:.1e} (largest |grad| {grad_max:.1e}) -> {'same computation' if agree else 'MISMATCH'}")


# --------------------------------------------------------------------------- memory


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def probe_memory(args) -> None:
    """Subprocess body: one variant's steps; prints `PROBE {json}` with the added peak RSS in MB."""
    s = setup(args)
    variant = {**VARIANTS, **BREAKDOWN}[args.probe]
    batches = s.batches[variant.images]
    gc.collect()
    try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        method = "VmHWM reset"
    except OSError:
        method = "VmHWM not reset: a lower bound"
    base = _status_kb("VmRSS")
    configure(s, variant)
    for i in range(args.warmup + PROBE_EXTRA_STEPS):
        train_step(s, variant, batches[i % len(batches)])
    peak = _status_kb("VmHWM")
    print("PROBE " + json.dumps({"added_mb": (peak - base) / 1024, "base_mb": base / 1024, "method": method}))


def cpu_memory(names: list[str]) -> dict[str, dict]:
    """Run a probe subprocess per variant, one after the other (they would compete for RAM and cores)."""
    results = {}
    for name in names:
        print(f"measuring the memory of '{name}' in a subprocess ...", file=sys.stderr, flush=True)
        command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--probe", name]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"memory probe '{name}' failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(lines[-1][len("PROBE "):])
    return results


# --------------------------------------------------------------------------- main


def describe_batches(batches: list[dict]) -> tuple[float, float]:
    """Mean visual tokens per image and mean padded sequence length."""
    tokens = [int(t * h * w) // 4 for b in batches for t, h, w in b["image_grid_thw"].tolist()]
    return statistics.mean(tokens), statistics.mean(b["input_ids"].shape[1] for b in batches)


def main() -> None:
    args = parse_args()
    if args.probe:
        probe_memory(args)
        return
    names = list(VARIANTS) + (list(BREAKDOWN) if args.breakdown else [])
    variants = {**VARIANTS, **BREAKDOWN}
    on_cuda = args.device.startswith("cuda")
    # CPU memory first, in subprocesses, while this process holds no model (RAM for --real-2b).
    memory = {} if on_cuda else cpu_memory(names)

    s = setup(args)
    sanity = sanity_check(s)
    times = {name: [] for name in names}
    losses = {name: [] for name in names}
    cuda_added = {name: 0.0 for name in names}
    for i in range(args.warmup + args.steps):
        order = names if i % 2 == 0 else names[::-1]  # A B, B A, ...: neither always goes first
        for name in order:
            variant = variants[name]
            batch = s.batches[variant.images][i % BATCHES]
            if on_cuda:
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            configure(s, variant)
            start = time.perf_counter()
            loss = train_step(s, variant, batch)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times[name].append(elapsed * 1e3)
                losses[name].append(loss)
                if on_cuda:
                    cuda_added[name] = max(cuda_added[name], (torch.cuda.max_memory_allocated() - before) / 2**20)
    if on_cuda:
        memory = {name: {"added_mb": cuda_added[name], "method": "torch.cuda.max_memory_allocated"}
                  for name in names}

    print(f"train step: banglaocr vs plain transformers - {s.description}")
    print(f"{args.warmup} warm-up + {args.steps} timed steps per variant, interleaved (A B, B A, ...)")
    header = (f"{'variant':<23}{'images':<22}{'logits':<14}{'vis.tok/img':>12}{'seq len':>9}{'data ms':>9}"
              f"{'step ms (median [min-max])':>30}{'samples/s':>11}{'added MB':>10}")
    print(header)
    labels = {"processor": "processor default", "budget": f"budget h{args.height} w<={args.max_width}"}
    for name in names:
        variant = variants[name]
        vis, seq = describe_batches(s.batches[variant.images])
        median = statistics.median(times[name])
        span = f"{median:.1f} [{min(times[name]):.1f}-{max(times[name]):.1f}]"
        print(f"{name:<23}{labels[variant.images]:<22}{'all positions' if variant.loss == 'full' else 'supervised':<14}"
              f"{vis:>12.1f}{seq:>9.1f}{s.prep_ms[variant.images]:>9.1f}{span:>30}"
              f"{args.batch_size / median * 1e3:>11.1f}{memory[name]['added_mb']:>10.0f}")
    print("data ms: collating one batch on the host (processor vs resize_to_budget + Collator), not part of the step")
    if on_cuda:
        print("added MB: torch.cuda.max_memory_allocated during a timed step minus memory allocated before it")
    else:
        print(f"added MB: peak RSS minus RSS before the first step, over {args.warmup}+{PROBE_EXTRA_STEPS} steps, "
              f"one subprocess per variant ({memory['baseline']['method']}); includes the optimizer state "
              "the first step creates (the same for both)")
    print(sanity)
    fastest = min(times["baseline"]) / min(times["banglaocr"])
    print(f"speedup of the fastest steps: {fastest:.2f} (the steps least disturbed by other load on the machine)")
    speedup = statistics.median(times["baseline"]) / statistics.median(times["banglaocr"])
    ratio = memory["banglaocr"]["added_mb"] / memory["baseline"]["added_mb"]
    now = statistics.median(times["banglaocr"])
    for name, change in LEVERS.items():  # each change of banglaocr's step alone, then all of them
        if name in times:
            before = statistics.median(times[name])
            print(f"{change}: banglaocr step without it {before:.1f} ms, with it {now:.1f} ms (x{before / now:.2f}); "
                  f"speedup vs plain transformers without it {statistics.median(times['baseline']) / before:.2f}")
    print(f"speedup={speedup:.2f} memory_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
