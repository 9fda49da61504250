"""The Qwen-format tokenizers: real ids, special tokens, chat template, cache, round trips."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from transformers import AutoTokenizer, Qwen2Tokenizer

from banglaocr.model import tokenizers as tokenizers_module
from banglaocr.model.tokenizers import (
    QWEN3_VL_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    build_char_tokenizer,
    build_qwen_tokenizer,
    special_token_ids,
)
from banglaocr.text import normalize

WORDS_FILE = Path(tokenizers_module.__file__).parents[1] / "assets" / "words" / "ben_words.txt"

# Ids from Qwen's own tokenizer.json (Qwen3 / Qwen3-VL), encoded with the `tokenizers` library.
REAL_ENCODINGS = {
    "Hello, world!": [9707, 11, 1879, 0],
    "বাংলা": [146026, 49128, 224, 146227, 41312],
    "আমি বাংলায় গান গাই।": [148014, 146415, 61356, 35178, 105, 49128, 224, 146227, 49128, 107, 11125,
                           120, 35178, 245, 49128, 101, 35178, 245, 49128, 229, 146031],
    "<|im_start|>assistant\n": [151644, 77091, 198],
    " hello\n\nworld  ": [23811, 271, 14615, 256],
}

CHAT_FORMAT = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>PROMPT<|im_end|>\n"
               "<|im_start|>assistant\nANSWER<|im_end|>\n")


def _sample_words(n: int = 200) -> list[str]:
    words = [line.strip() for line in WORDS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(words) // n)
    return words[::step][:n]


def _messages() -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "PROMPT"}]},
        {"role": "assistant", "content": "ANSWER"},
    ]


# --------------------------------------------------------------------------- the real tokenizer


@pytest.mark.parametrize("text", list(REAL_ENCODINGS))
def test_qwen_tokenizer_encodes_like_the_real_one(qwen_tokenizer, text):
    assert qwen_tokenizer.encode(text) == REAL_ENCODINGS[text]


def test_qwen_tokenizer_has_the_real_special_tokens(qwen_tokenizer):
    assert len(qwen_tokenizer) == 151669
    assert qwen_tokenizer.eos_token == "<|im_end|>" and qwen_tokenizer.eos_token_id == 151645
    assert qwen_tokenizer.pad_token == "<|endoftext|>" and qwen_tokenizer.pad_token_id == 151643
    assert qwen_tokenizer.bos_token is None
    assert special_token_ids(qwen_tokenizer) == {
        "pad": 151643, "im_start": 151644, "im_end": 151645, "vision_start": 151652,
        "vision_end": 151653, "image_pad": 151655, "video_pad": 151656,
    }
    names = qwen_tokenizer.convert_ids_to_tokens(list(range(151643, 151669)))
    assert names == [name for name, _ in QWEN_SPECIAL_TOKENS]
    assert names[-1] == "</think>"


def test_special_flags_decide_what_decode_skips(qwen_tokenizer):
    ids = qwen_tokenizer.encode("<|im_start|>x<|im_end|><think>y</think>")
    assert qwen_tokenizer.decode(ids, skip_special_tokens=True) == "x<think>y</think>"


def test_qwen_chat_template_gives_the_qwen3_vl_format(qwen_tokenizer):
    text = qwen_tokenizer.apply_chat_template(_messages(), tokenize=False)
    assert text == CHAT_FORMAT
    prompt = qwen_tokenizer.apply_chat_template(_messages()[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == CHAT_FORMAT[: CHAT_FORMAT.index("ANSWER")]


def test_qwen_tokenizer_is_cached_and_loaded_from_the_cache(banglaocr_cache, monkeypatch, qwen_tokenizer):
    # The session fixture built the tokenizer into the session cache ($BANGLAOCR_CACHE).
    (folder,) = [p for p in banglaocr_cache.iterdir() if p.name.startswith("qwen-tokenizer-")]
    assert (folder / "tokenizer.json").is_file() and (folder / "chat_template.jinja").is_file()
    assert not [p for p in banglaocr_cache.iterdir() if p.name.startswith(".")]  # no temporary folders left

    def no_rebuild():
        raise AssertionError("the cached tokenizer should have been loaded")

    monkeypatch.setattr(tokenizers_module, "_build_qwen_tokenizer_uncached", no_rebuild)
    cached = build_qwen_tokenizer()
    assert cached.get_vocab() == qwen_tokenizer.get_vocab()
    assert cached.chat_template == qwen_tokenizer.chat_template == QWEN3_VL_CHAT_TEMPLATE
    assert cached.encode("আমি বাংলায় গান গাই।") == REAL_ENCODINGS["আমি বাংলায় গান গাই।"]
    assert special_token_ids(cached) == special_token_ids(qwen_tokenizer)


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch, char_tokenizer):
    # A cheap stand-in for the 2-second build proves the damaged folder was replaced.
    monkeypatch.setattr(tokenizers_module, "_build_qwen_tokenizer_uncached", lambda: char_tokenizer)
    folder = tmp_path / f"qwen-tokenizer-{tokenizers_module._qwen_ranks_version()}-{tokenizers_module._BUILD_FORMAT}"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{ not json", encoding="utf-8")
    rebuilt = build_qwen_tokenizer(cache_dir=tmp_path)
    assert len(rebuilt) == len(char_tokenizer)
    assert len(Qwen2Tokenizer.from_pretrained(str(folder))) == len(char_tokenizer)


# --------------------------------------------------------------------------- the character tokenizer


def test_char_tokenizer_keeps_the_qwen_format(char_tokenizer):
    assert 400 < len(char_tokenizer) < 440
    assert char_tokenizer.convert_ids_to_tokens(list(range(26))) == [name for name, _ in QWEN_SPECIAL_TOKENS]
    assert char_tokenizer.eos_token == "<|im_end|>" and char_tokenizer.pad_token == "<|endoftext|>"
    ids = special_token_ids(char_tokenizer)
    assert ids == {"pad": 0, "im_start": 1, "im_end": 2, "vision_start": 9, "vision_end": 10,
                   "image_pad": 12, "video_pad": 13}
    assert char_tokenizer.apply_chat_template(_messages(), tokenize=False) == CHAT_FORMAT
    assert char_tokenizer.chat_template == QWEN3_VL_CHAT_TEMPLATE


def test_each_bengali_code_point_is_one_token(char_tokenizer):
    # NFC-stable code points only: NFC (part of every Qwen2Tokenizer) splits য় ড় ঢ় into two.
    letters = [chr(cp) for cp in range(0x0980, 0x0A00) if unicodedata.normalize("NFC", chr(cp)) == chr(cp)]
    letters += ["\u0964", "\u0965", "\u200c", "\u200d"]
    for letter in letters:
        ids = char_tokenizer.encode(letter)
        assert len(ids) == 1, f"U+{ord(letter):04X} -> {ids}"
        assert char_tokenizer.decode(ids) == letter
    assert char_tokenizer.encode("\u09df") == char_tokenizer.encode("\u09af\u09bc")  # য় = য + nukta
    # Anything else still encodes, byte by byte.
    assert char_tokenizer.decode(char_tokenizer.encode("OCR 2024 ✓")) == "OCR 2024 ✓"


@pytest.mark.parametrize("which", ["char_tokenizer", "qwen_tokenizer"])
def test_bundled_words_round_trip(request, which):
    tokenizer = request.getfixturevalue(which)
    words = _sample_words(200)
    assert len(words) == 200
    for word in words:
        canonical = normalize(word)
        decoded = tokenizer.decode(tokenizer.encode(canonical))
        # Decoding gives the NFC spelling of what went in; the canonical form is one normalize away.
        assert decoded == unicodedata.normalize("NFC", canonical)
        assert normalize(decoded) == canonical
        if which == "char_tokenizer":
            assert len(tokenizer.encode(canonical)) == len(unicodedata.normalize("NFC", canonical))


def test_char_tokenizer_round_trips_through_save_and_auto_tokenizer(tmp_path, char_tokenizer):
    char_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "Qwen2Tokenizer"
    assert reloaded.get_vocab() == char_tokenizer.get_vocab()
    assert special_token_ids(reloaded) == special_token_ids(char_tokenizer)
    assert reloaded.eos_token == "<|im_end|>" and reloaded.pad_token == "<|endoftext|>"
    assert reloaded.chat_template == char_tokenizer.chat_template
    text = "<|im_start|>assistant\nবাংলা<|im_end|>"
    assert reloaded.encode(text) == char_tokenizer.encode(text)
    assert reloaded.decode(reloaded.encode(text), skip_special_tokens=True) == "assistant\nবাংলা"


def test_fresh_char_tokenizers_are_identical():
    assert build_char_tokenizer().get_vocab() == build_char_tokenizer().get_vocab()


def test_special_token_ids_rejects_a_tokenizer_without_qwen_specials():
    plain = Qwen2Tokenizer(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[])
    with pytest.raises(ValueError, match="im_start"):
        special_token_ids(plain)


# --------------------------------------------------------------------------- counting offline

QWEN_HUB_ID = "Qwen/Qwen3-VL-2B-Instruct"


def test_an_unfetchable_qwen_vl_id_counts_with_the_bundled_tokenizer(qwen_tokenizer):
    # The test session is offline (conftest) and the hub cache holds no Qwen tokenizer.
    counting, note = tokenizers_module.load_counting_tokenizer(QWEN_HUB_ID)
    assert note is not None and QWEN_HUB_ID in note and "HF_HUB_OFFLINE" in note and "bundled" in note
    assert "\n" not in note
    # The same counts as the tokenizer the hub gives (the real one, which build_qwen_tokenizer rebuilds).
    words = _sample_words(200)
    assert [len(counting(w, add_special_tokens=False)["input_ids"]) for w in words] == \
        [len(qwen_tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    sentence = "আমি বাংলায় গান গাই।"
    assert counting.encode(sentence) == REAL_ENCODINGS[sentence]


def test_an_unreachable_hub_falls_back_without_waiting_on_retries(monkeypatch):
    from banglaocr import hub

    monkeypatch.setattr(hub, "offline", lambda environ=None: False)
    monkeypatch.setattr(hub, "unreachable", lambda timeout=0: "https://huggingface.co is unreachable (no route)")
    monkeypatch.setattr(tokenizers_module, "load_tokenizer", lambda name: pytest.fail("asked the hub"))
    _, note = tokenizers_module.load_counting_tokenizer("Qwen/Qwen2-VL-7B-Instruct")
    assert "is unreachable (no route)" in note


def test_a_cached_qwen_tokenizer_is_used_as_it_is(tmp_path, monkeypatch, char_tokenizer):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--Qwen--Qwen3-VL-2B-Instruct" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    (snapshot / "tokenizer_config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(tokenizers_module, "load_tokenizer", lambda name: char_tokenizer)
    counting, note = tokenizers_module.load_counting_tokenizer(QWEN_HUB_ID)
    assert note is None and counting is char_tokenizer


@pytest.mark.parametrize("name", ["google/gemma-3-4b-it", "someone/Qwen3-VL-2B-Instruct-copy"])
def test_other_tokenizers_fail_as_before(name):
    from banglaocr.errors import UserError

    with pytest.raises(UserError, match=f"cannot load tokenizer '{name}'"):
        tokenizers_module.load_counting_tokenizer(name)


def test_a_local_folder_named_like_a_qwen_id_is_not_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Qwen" / "Qwen3-VL-2B-Instruct").mkdir(parents=True)  # a folder without a tokenizer
    assert not tokenizers_module.is_qwen_vl_hub_id(QWEN_HUB_ID)
    from banglaocr.errors import UserError

    with pytest.raises(UserError, match="cannot load tokenizer"):
        tokenizers_module.load_counting_tokenizer(QWEN_HUB_ID)
