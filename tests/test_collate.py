"""Collate (banglaocr.data.collate): the chat sequence, labels, padding, and what the model receives."""

from __future__ import annotations

import random
import types
import unicodedata
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

import banglaocr
from banglaocr.config import AugmentConfig, ImageConfig, LoraConfig, ModelConfig, TinyModelSpec
from banglaocr.data.collate import (
    IGNORE_INDEX,
    MODEL_INPUT_KEYS,
    Collator,
    chat_parts,
    finish_batch_on_device,
    generation_batch,
    image_token_counts,
    training_batch,
)
from banglaocr.data.pixels import image_grid, patchify, resize_to_budget, visual_tokens
from banglaocr.model.tokenizers import special_token_ids
from banglaocr.text import normalize

WORDS_FILE = Path(banglaocr.__file__).parent / "assets" / "words" / "ben_words.txt"
PROMPT = "এই ছবিতে হাতে লেখা বাংলা শব্দটি লেখো।"


@pytest.fixture(params=["qwen", "char"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")


def random_words(n: int = 200, seed: int = 0) -> list[str]:
    words = [line.strip() for line in WORDS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [normalize(word) for word in random.Random(seed).sample(words, n)]


def random_grids(n: int, seed: int = 0) -> torch.Tensor:
    rng = random.Random(seed)
    return torch.tensor([[1, rng.choice([2, 4, 6]), 2 * rng.randint(1, 16)] for _ in range(n)])


def word_image(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (240, 238, 230))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        draw.line([(rng.randrange(width), rng.randrange(height)) for _ in range(2)], fill=(30, 30, 60), width=2)
    return image


# --------------------------------------------------------------------------- labels


def test_supervises_exactly_the_answer_and_im_end(tokenizer):
    answers = random_words(200)
    grids = random_grids(len(answers))
    batch = training_batch(tokenizer, PROMPT, answers, grids)
    im_end = special_token_ids(tokenizer)["im_end"]
    for row, (answer, labels, ids) in enumerate(zip(answers, batch["labels"], batch["input_ids"])):
        supervised = labels[labels != IGNORE_INDEX]
        assert supervised[-1].item() == im_end
        assert tokenizer.decode(supervised) == unicodedata.normalize("NFC", answer) + "<|im_end|>"
        # The tokenizer decodes to NFC; the canonical form is one normalize() away.
        assert normalize(tokenizer.decode(supervised[:-1])) == answer
        # The supervised positions are one run, the labels there equal the inputs, and the
        # token after <|im_end|> (the newline) is in the input but not supervised.
        positions = (labels != IGNORE_INDEX).nonzero().flatten()
        start, end = positions[0].item(), positions[-1].item()
        assert positions.tolist() == list(range(start, end + 1))
        assert torch.equal(ids[start:end + 1], labels[start:end + 1])
        assert tokenizer.decode(ids[end + 1:batch["lengths"][row]]) == "\n"


def test_every_sample_keeps_a_supervised_token_even_when_empty(tokenizer):
    batch = training_batch(tokenizer, PROMPT, ["", "ক"], [[1, 2, 2], [1, 2, 2]])
    counts = (batch["labels"] != IGNORE_INDEX).sum(1).tolist()
    assert counts[0] == 1 and counts[1] >= 2
    assert batch["answer_offsets"][0] == [(0, 0)]


def test_answer_text_cannot_inject_control_tokens(tokenizer):
    batch = training_batch(tokenizer, PROMPT, ["ক<|im_end|>"], [[1, 2, 2]])
    ids = special_token_ids(tokenizer)
    supervised = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    assert supervised.count(ids["im_end"]) == 1 and supervised[-1] == ids["im_end"]


def test_image_pads_match_visual_tokens_and_types(tokenizer):
    answers = random_words(20, seed=1)
    grids = random_grids(len(answers), seed=1)
    batch = training_batch(tokenizer, PROMPT, answers, grids)
    image_pad = special_token_ids(tokenizer)["image_pad"]
    for ids, types_row, (t, h, w) in zip(batch["input_ids"], batch["mm_token_type_ids"], grids.tolist()):
        is_image = ids == image_pad
        assert is_image.sum().item() == visual_tokens(16 * h, 16 * w) == t * h * w // 4
        assert torch.equal(types_row, is_image.long())
    assert image_token_counts(grids) == [visual_tokens(16 * h, 16 * w) for _, h, w in grids.tolist()]


def test_answer_offsets_cover_the_answer(tokenizer):
    answers = random_words(200, seed=2)
    batch = training_batch(tokenizer, PROMPT, answers, random_grids(len(answers), seed=2))
    for answer, offsets, labels in zip(answers, batch["answer_offsets"], batch["labels"]):
        assert len(offsets) == int((labels != IGNORE_INDEX).sum())
        assert offsets[-1] == (len(answer), len(answer))  # <|im_end|>: empty span at the end
        covered = set()
        previous_start = 0
        for start, end in offsets[:-1]:
            assert 0 <= start < end <= len(answer)
            assert start >= previous_start  # spans move forward with the tokens
            previous_start = start
            covered.update(range(start, end))
        assert covered == set(range(len(answer)))


def test_prompt_part_is_the_same_for_training_and_generation(tokenizer):
    grids = [[1, 2, 6], [1, 4, 2]]
    train = training_batch(tokenizer, PROMPT, ["কলম", "বই"], grids)
    gen = generation_batch(tokenizer, PROMPT, grids)
    for row in range(2):
        prompt_ids = gen["input_ids"][row][gen["attention_mask"][row].bool()]
        assert torch.equal(train["input_ids"][row][: len(prompt_ids)], prompt_ids)
        assert (train["labels"][row][: len(prompt_ids)] == IGNORE_INDEX).all()
        assert tokenizer.decode(prompt_ids).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_chat_parts_come_from_tokenising(tokenizer):
    parts = chat_parts(tokenizer, PROMPT)
    text = tokenizer.decode(parts.before_image + [parts.image_pad] + parts.after_image)
    assert text == f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(parts.end + parts.after_end) == "<|im_end|>\n"


# --------------------------------------------------------------------------- padding and lengths


def test_training_is_right_padded_and_generation_left_padded(tokenizer):
    pad = special_token_ids(tokenizer)["pad"]
    grids = [[1, 2, 2], [1, 2, 16]]
    train = training_batch(tokenizer, PROMPT, ["কলমদানি", "ক"], grids)
    short = min(range(2), key=lambda i: train["lengths"][i])
    n = train["lengths"][short]
    assert train["attention_mask"][short, :n].all() and not train["attention_mask"][short, n:].any()
    assert (train["input_ids"][short, n:] == pad).all()
    assert (train["labels"][short, n:] == IGNORE_INDEX).all()
    assert (train["mm_token_type_ids"][short, n:] == 0).all()

    gen = generation_batch(tokenizer, PROMPT, grids)
    lengths = gen["lengths"]
    width = gen["input_ids"].shape[1]
    assert width == max(lengths)
    for row, n in enumerate(lengths):
        assert not gen["attention_mask"][row, : width - n].any() and gen["attention_mask"][row, width - n:].all()
        assert (gen["input_ids"][row, : width - n] == pad).all()
    # Every row ends with the assistant header, in the same columns.
    header = len(tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
    assert torch.equal(gen["input_ids"][0, -header:], gen["input_ids"][1, -header:])
    assert tokenizer.decode(gen["input_ids"][0, -header:]) == "<|im_start|>assistant\n"


def qwen3_vl_processor(tokenizer):
    """Qwen3VLProcessor with a stand-in video processor.

    Without torchvision the real video processor cannot be built, and the processor's type check
    looks it up in a registry that then fails. Only images are processed here, so a stand-in
    object with the two attributes the processor reads is enough; the type check is skipped for
    that one argument only.
    """
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLProcessor

    class ProcessorWithoutVideo(Qwen3VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        min_pixels=32 * 32, max_pixels=16777216)
    return ProcessorWithoutVideo(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=types.SimpleNamespace(merge_size=2, temporal_patch_size=2),
                                 chat_template=tokenizer.chat_template)


@pytest.mark.parametrize("train", [True, False])
def test_batch_equals_qwen3_vl_processor(tokenizer, train):
    budget = ImageConfig(height=64, max_width=256)
    images = [resize_to_budget(word_image(w, h, seed), budget)
              for seed, (w, h) in enumerate([(120, 40), (300, 70), (50, 60), (200, 45)])]
    answers = random_words(len(images), seed=4)
    samples = [{"image": image, "text": answer} for image, answer in zip(images, answers)]
    batch = Collator(tokenizer, PROMPT, train=train)(samples)
    ours = finish_batch_on_device(batch, "cpu")

    processor = qwen3_vl_processor(tokenizer)
    texts = []
    for answer in answers:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        if train:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=not train))
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "right" if train else "left"
    try:
        expected = processor(images=images, text=texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = saved_side

    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(ours[key], expected[key].long()), key
    assert (ours["pixel_values"] - expected["pixel_values"]).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- collator and device step


def collated(tokenizer, train: bool = True):
    budget = ImageConfig(height=32, stretch=2.0, max_width=256)
    samples = [{"image": resize_to_budget(word_image(w, 40, seed), budget), "text": text, "path": f"{seed}.png"}
               for seed, (w, text) in enumerate([(90, "কলম"), (40, "ক"), (160, "বাংলাদেশ")])]
    return Collator(tokenizer, PROMPT, train=train)(samples)


def test_collator_ships_images_and_tokens(char_tokenizer):
    batch = collated(char_tokenizer)
    assert batch["pixel_batch"].shape[:3] == (3, 3, 32) and batch["pixel_batch"].dtype == torch.float32
    assert batch["image_grid_thw"].tolist() == image_grid(32, batch["widths"]).tolist()
    assert batch["texts"] == ["কলম", "ক", "বাংলাদেশ"]
    assert batch["meta"] == [{"path": "0.png"}, {"path": "1.png"}, {"path": "2.png"}]
    assert {"input_ids", "attention_mask", "labels", "mm_token_type_ids", "answer_offsets", "lengths"} <= set(batch)
    gen = collated(char_tokenizer, train=False)
    assert "labels" not in gen and gen["attention_mask"][:, -1].all()


def test_finish_batch_on_device_augments_only_when_asked(char_tokenizer):
    batch = collated(char_tokenizer)
    plain = finish_batch_on_device(batch, "cpu")
    assert set(plain) == set(MODEL_INPUT_KEYS)
    expected_values, expected_grid = patchify(batch["pixel_batch"], batch["widths"])
    assert torch.equal(plain["pixel_values"], expected_values) and torch.equal(plain["image_grid_thw"], expected_grid)

    cfg = AugmentConfig(probability=1.0)
    first = finish_batch_on_device(batch, "cpu", cfg, torch.Generator().manual_seed(0))
    again = finish_batch_on_device(batch, "cpu", cfg, torch.Generator().manual_seed(0))
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    assert not torch.equal(first["pixel_values"], plain["pixel_values"])
    assert torch.equal(first["input_ids"], plain["input_ids"])
    with pytest.raises(ValueError, match="Generator"):
        finish_batch_on_device(batch, "cpu", cfg, None)


# --------------------------------------------------------------------------- a tiny Qwen3-VL on a collated batch


@pytest.fixture(scope="module")
def tiny_lora_model():
    from banglaocr.model.factory import load_model

    torch.manual_seed(0)
    spec = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                         vision_depth=2, vision_hidden_size=64, vision_heads=4, vision_intermediate_size=128)
    loaded = load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=spec), LoraConfig(r=4, dropout=0.0))
    return loaded


def test_tiny_model_forward_backward_on_a_collated_batch(tiny_lora_model):
    model, tokenizer = tiny_lora_model.model, tiny_lora_model.tokenizer
    batch = collated(tokenizer)
    inputs = finish_batch_on_device(batch, "cpu", AugmentConfig(probability=1.0), torch.Generator().manual_seed(0))
    labels = batch["labels"]

    # The loss on supervised positions only (DESIGN decision 2): shift, then gather, then lm_head.
    base = model.get_base_model()
    hidden = base.model(**inputs).last_hidden_state
    targets_mask = labels[:, 1:] != IGNORE_INDEX
    logits = base.lm_head(hidden[:, :-1][targets_mask])
    loss = torch.nn.functional.cross_entropy(logits, labels[:, 1:][targets_mask])
    assert torch.isfinite(loss)
    model.zero_grad()
    loss.backward()
    lora_b = {name: p.grad for name, p in model.named_parameters() if "lora_B" in name}
    assert lora_b and all(grad is not None and grad.abs().sum() > 0 for grad in lora_b.values())
    assert all(p.grad is None for name, p in model.named_parameters() if "lora_" not in name)


def test_padding_does_not_change_what_the_model_sees(tiny_lora_model):
    """Each row of a padded batch gives the logits of that sample alone (right and left padding)."""
    model, tokenizer = tiny_lora_model.model, tiny_lora_model.tokenizer
    model.eval()
    for train in (True, False):
        batch = collated(tokenizer, train=train)
        with torch.no_grad():
            logits = model(**finish_batch_on_device(batch, "cpu")).logits
        for row in range(len(batch["texts"])):
            single = {key: value[row:row + 1] for key, value in batch.items()}
            keep = single["attention_mask"][0].bool()
            for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
                single[key] = single[key][:, keep]
            single["pixel_batch"] = single["pixel_batch"][..., : single["widths"][0]]
            with torch.no_grad():
                alone = model(**finish_batch_on_device(single, "cpu")).logits[0]
            assert (logits[row][keep] - alone).abs().max().item() < 1e-4


def test_generate_from_a_left_padded_batch(tiny_lora_model):
    model, tokenizer = tiny_lora_model.model, tiny_lora_model.tokenizer
    model.eval()
    batch = collated(tokenizer, train=False)
    inputs = finish_batch_on_device(batch, "cpu")
    ids = special_token_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, eos_token_id=ids["im_end"],
                             pad_token_id=ids["pad"])
    assert out.shape[0] == 3 and out.shape[1] <= inputs["input_ids"].shape[1] + 4
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
