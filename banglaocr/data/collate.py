"""Collate: the chat sequence around each word image. The ONLY place that knows the prompt format.

One training sample is Qwen3-VL's chat format (the shipped chat template; no system prompt)::

    <|im_start|>user\\n<|vision_start|><|image_pad|>*N<|vision_end|>PROMPT<|im_end|>\\n<|im_start|>assistant\\n
    ANSWER<|im_end|>\\n

where N = visual tokens of the image. The prompt part (first line) and the answer part are
tokenised SEPARATELY and concatenated as ids; the label mask is simply the prompt length, so the
answer's tokens are never searched for (BPE context cannot make a sample lose its labels).

Supervised (label != -100): the answer tokens and `<|im_end|>` - the model must learn to stop.
Every sample therefore has at least one supervised token, even with an empty answer. The "\\n"
after `<|im_end|>` is kept in `input_ids` (so the sequence equals the chat template's, token for
token) but NOT supervised: generation stops at `<|im_end|>`, so that position is never predicted
and would only dilute the per-token loss.

Special tokens are inserted by id (`special_token_ids`, looked up by name); the text between
them is tokenised with special-token strings split, so an answer cannot smuggle in a control
token. Nothing about lengths is hard-coded: everything comes from tokenising.

The data path: the DataLoader's `Collator` ships resized images as one [B, 3, H, W] tensor in
[0, 1] plus token tensors; `finish_batch_on_device` then moves them, augments the images on the
device (training only) and patchifies them there into the model inputs.

>>> from banglaocr.model.tokenizers import build_char_tokenizer
>>> tok = build_char_tokenizer()
>>> batch = training_batch(tok, "লেখো", ["কলম"], [[1, 2, 4]])
>>> tok.decode(batch["input_ids"][0])
'<|im_start|>user\\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>লেখো<|im_end|>\\n<|im_start|>assistant\\nকলম<|im_end|>\\n'
>>> tok.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]), batch["answer_offsets"][0]
('কলম<|im_end|>', [(0, 1), (1, 2), (2, 3), (3, 3)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from banglaocr.config import AugmentConfig
from banglaocr.data.augment import augment_batch
from banglaocr.data.pixels import MERGE_SIZE, image_grid, images_to_batch, patchify
from banglaocr.model.tokenizers import special_token_ids

IGNORE_INDEX = -100
"""Label of positions without loss (the prompt, the image, the trailing newline, padding)."""

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")
"""What `Qwen3VLForConditionalGeneration.forward` / `generate` take from a batch (never `labels`:
the loss is computed outside the model, on supervised positions only)."""


@dataclass(frozen=True)
class ChatParts:
    """Token ids of the fixed parts of one chat sample, for one tokenizer and prompt.

    `before_image` + `<|image_pad|>` * N + `after_image` is the prompt part (ending with
    `<|im_start|>assistant\\n`); the answer's ids follow, then `end` (`<|im_end|>`, supervised)
    and `after_end` (the newline, not supervised).
    """

    before_image: list[int]
    image_pad: int
    after_image: list[int]
    end: list[int]
    after_end: list[int]
    pad: int

    def prompt_length(self, image_tokens: int) -> int:
        """Tokens of the prompt part with `image_tokens` image pads."""
        return len(self.before_image) + image_tokens + len(self.after_image)


def _text_ids(tokenizer, text: str) -> list[int]:
    # split_special_tokens: text between the control tokens is text, whatever it contains.
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def chat_parts(tokenizer, prompt: str) -> ChatParts:
    """The fixed token ids of the chat format for `prompt` (four short tokenizer calls: cheap per batch).

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> parts = chat_parts(build_char_tokenizer(), "লেখো")
    >>> parts.prompt_length(4), parts.end, parts.after_end
    (29, [2], [36])
    """
    ids = special_token_ids(tokenizer)
    newline = _text_ids(tokenizer, "\n")
    before_image = [ids["im_start"], *_text_ids(tokenizer, "user\n"), ids["vision_start"]]
    after_image = [ids["vision_end"], *_text_ids(tokenizer, prompt), ids["im_end"], *newline,
                   ids["im_start"], *_text_ids(tokenizer, "assistant\n")]
    return ChatParts(before_image=before_image, image_pad=ids["image_pad"], after_image=after_image,
                     end=[ids["im_end"]], after_end=newline, pad=ids["pad"])


def image_token_counts(image_grid_thw: torch.Tensor | list) -> list[int]:
    """Visual tokens per image from `image_grid_thw` rows (t, h, w): t * h * w / merge_size**2.

    >>> image_token_counts([[1, 4, 16], [1, 2, 4]])
    [16, 2]
    """
    rows = image_grid_thw.tolist() if isinstance(image_grid_thw, torch.Tensor) else image_grid_thw
    return [int(t) * int(h) * int(w) // (MERGE_SIZE * MERGE_SIZE) for t, h, w in rows]


def _prompt_ids(parts: ChatParts, image_tokens: int) -> tuple[list[int], list[int]]:
    """Prompt ids and their modality types (1 = image token, as transformers' processors mark them)."""
    ids = parts.before_image + [parts.image_pad] * image_tokens + parts.after_image
    types = [0] * len(parts.before_image) + [1] * image_tokens + [0] * len(parts.after_image)
    return ids, types


def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([[value] * (width - len(row)) + row if left else row + [value] * (width - len(row))
                         for row in rows], dtype=torch.long)


def training_batch(tokenizer, prompt: str, answers: list[str],
                   image_grid_thw: torch.Tensor | list) -> dict[str, Any]:
    """Right-padded training sequences: prompt + image tokens + answer + `<|im_end|>\\n`.

    Returns `input_ids`, `attention_mask`, `labels` (answer + `<|im_end|>` only),
    `mm_token_type_ids` (1 on image tokens) as [B, L] long tensors; `answer_offsets` (per sample,
    one (start, end) character span of the answer per supervised token, from the tokenizer's
    offsets of the tokenised answer - several tokens can share a character, a token can span
    two; `<|im_end|>` gets the empty span (len, len)); and `lengths` (unpadded lengths).

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> batch = training_batch(build_char_tokenizer(), "লেখো", ["কলম", ""], [[1, 2, 4], [1, 2, 2]])
    >>> batch["lengths"], [int((row != IGNORE_INDEX).sum()) for row in batch["labels"]]
    ([32, 28], [4, 1])
    """
    counts = image_token_counts(image_grid_thw)
    if len(counts) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(counts)} images")
    parts = chat_parts(tokenizer, prompt)
    encoded = tokenizer(list(answers), add_special_tokens=False, split_special_tokens=True,
                        return_offsets_mapping=True)
    input_ids, labels, types, offsets = [], [], [], []
    for answer, answer_ids, answer_offsets, count in zip(answers, encoded["input_ids"],
                                                          encoded["offset_mapping"], counts):
        prompt_ids, prompt_types = _prompt_ids(parts, count)
        supervised = list(answer_ids) + parts.end
        input_ids.append(prompt_ids + supervised + parts.after_end)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + supervised + [IGNORE_INDEX] * len(parts.after_end))
        types.append(prompt_types + [0] * (len(supervised) + len(parts.after_end)))
        offsets.append([(int(s), int(e)) for s, e in answer_offsets] + [(len(answer), len(answer))] * len(parts.end))
    lengths = [len(row) for row in input_ids]
    return {
        "input_ids": _pad(input_ids, parts.pad, left=False),
        "attention_mask": _pad([[1] * n for n in lengths], 0, left=False),
        "labels": _pad(labels, IGNORE_INDEX, left=False),
        "mm_token_type_ids": _pad(types, 0, left=False),
        "answer_offsets": offsets,
        "lengths": lengths,
    }


def generation_batch(tokenizer, prompt: str, image_grid_thw: torch.Tensor | list) -> dict[str, Any]:
    """LEFT-padded prompts ending with `<|im_start|>assistant\\n`, ready for `generate`.

    Left padding puts every prompt's last token at the same position, so the first generated
    token of every row follows its own prompt directly.

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> batch = generation_batch(build_char_tokenizer(), "লেখো", [[1, 2, 4], [1, 2, 2]])
    >>> batch["lengths"], batch["attention_mask"][:, 0].tolist()  # the shorter prompt is padded on the left
    ([27, 26], [1, 0])
    """
    parts = chat_parts(tokenizer, prompt)
    rows = [_prompt_ids(parts, count) for count in image_token_counts(image_grid_thw)]
    lengths = [len(ids) for ids, _ in rows]
    return {
        "input_ids": _pad([ids for ids, _ in rows], parts.pad, left=True),
        "attention_mask": _pad([[1] * n for n in lengths], 0, left=True),
        "mm_token_type_ids": _pad([types for _, types in rows], 0, left=True),
        "lengths": lengths,
    }


@dataclass
class Collator:
    """DataLoader `collate_fn`: samples -> images as one tensor + token tensors (CPU side).

    Each sample is a mapping with `image` (a PIL image already resized to the budget with
    `pixels.resize_to_budget`, so all heights agree), `text` (the normalised answer; may be
    missing when `train=False`) and any other keys, which are passed through in `meta`.

    The batch holds `pixel_batch` ([B, 3, H, W] float32 in [0, 1], white right padding),
    `widths`, `image_grid_thw`, the token tensors of `training_batch` (train=True) or
    `generation_batch` (train=False), `texts` and `meta`. Augmentation and patchify are NOT done
    here: the DataLoader ships images, and `finish_batch_on_device` augments (training only) and
    patchifies on the accelerator, where kornia is fast and the CPU workers stay free for decoding.

    >>> from PIL import Image
    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> collate = Collator(build_char_tokenizer(), "লেখো")
    >>> batch = collate([{"image": Image.new("RGB", (64, 32), "white"), "text": "কলম", "id": 7}])
    >>> tuple(batch["pixel_batch"].shape), batch["texts"], batch["meta"]
    ((1, 3, 32, 64), ['কলম'], [{'id': 7}])
    """

    tokenizer: Any
    prompt: str
    train: bool = True

    def __call__(self, samples: list[dict]) -> dict[str, Any]:
        images: list[Image.Image] = [sample["image"] for sample in samples]
        pixel_batch, widths = images_to_batch(images)
        grid = image_grid(pixel_batch.shape[2], widths)
        texts = [sample.get("text") for sample in samples]
        if self.train:
            if any(text is None for text in texts):
                raise ValueError("a training sample has no text")
            tokens = training_batch(self.tokenizer, self.prompt, texts, grid)
        else:
            tokens = generation_batch(self.tokenizer, self.prompt, grid)
        meta = [{k: v for k, v in sample.items() if k not in ("image", "text")} for sample in samples]
        return {"pixel_batch": pixel_batch, "widths": widths, "image_grid_thw": grid, **tokens,
                "texts": texts, "meta": meta}


def finish_batch_on_device(batch: dict[str, Any], device: torch.device | str,
                           augment_cfg: AugmentConfig | None = None,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Move a `Collator` batch to `device`, augment its images (if `augment_cfg`), patchify: model inputs.

    Returns exactly `MODEL_INPUT_KEYS` (`input_ids`, `attention_mask`, `mm_token_type_ids`,
    `pixel_values`, `image_grid_thw`) on `device`; `labels` and `answer_offsets` stay in `batch`
    for the loss. Pass `augment_cfg=None` for validation, test and prediction. `generator` (a CPU
    generator, seeded by the training loop) makes the augmentation reproducible.
    Copies are `non_blocking`: they overlap with compute when the DataLoader pins memory.

    >>> from PIL import Image
    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> batch = Collator(build_char_tokenizer(), "লেখো")([{"image": Image.new("RGB", (64, 32)), "text": "ক"}])
    >>> inputs = finish_batch_on_device(batch, "cpu")
    >>> sorted(inputs), tuple(inputs["pixel_values"].shape)
    (['attention_mask', 'image_grid_thw', 'input_ids', 'mm_token_type_ids', 'pixel_values'], (8, 1536))
    """
    device = torch.device(device)
    pixels = batch["pixel_batch"].to(device, non_blocking=True)
    if augment_cfg is not None and augment_cfg.enabled:
        if generator is None:
            raise ValueError("augmentation needs a seeded torch.Generator")
        pixels = augment_batch(pixels, batch["widths"], augment_cfg, generator)
    pixel_values, grid = patchify(pixels, batch["widths"])
    inputs = {key: batch[key].to(device, non_blocking=True)
              for key in ("input_ids", "attention_mask", "mm_token_type_ids")}
    return {**inputs, "pixel_values": pixel_values, "image_grid_thw": grid}
