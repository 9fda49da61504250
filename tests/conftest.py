"""Shared fixtures: offline hub, a per-session cache folder, and the two Qwen-format tokenizers.

The hub is switched off before anything imports transformers, so a test that would reach the
network fails at once instead of hanging. The package cache (`$BANGLAOCR_CACHE`) points into a
per-session temporary folder so tests never write into the user's home; the real tokenizer is
then built once per session (about 2 s) and shared.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def banglaocr_cache(tmp_path_factory):
    """A fresh package cache folder for this test session (`$BANGLAOCR_CACHE`)."""
    folder = tmp_path_factory.mktemp("banglaocr-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BANGLAOCR_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def qwen_tokenizer(banglaocr_cache):
    """The real Qwen3-VL tokenizer (151669 entries), built offline once per session."""
    from banglaocr.model.tokenizers import build_qwen_tokenizer

    return build_qwen_tokenizer()


@pytest.fixture(scope="session")
def char_tokenizer():
    """The small one-token-per-Bengali-letter Qwen-format tokenizer."""
    from banglaocr.model.tokenizers import build_char_tokenizer

    return build_char_tokenizer()
