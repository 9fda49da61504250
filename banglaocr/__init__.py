"""banglaocr: fine-tune Qwen3-VL with LoRA to read handwritten Bangla words.

The public Python API is small: `prepare_image(image, model)` gives the exact pixels and prompt
banglaocr reads a word image with (`banglaocr.infer.prepare_image`), for feeding the model to plain
transformers, vLLM or anything else; everything else is the `banglaocr` command. It is imported on
first use, so `import banglaocr` (and `banglaocr --help`) stays fast.

>>> import banglaocr
>>> banglaocr.__version__
'0.1.0'
>>> banglaocr.prepare_image.__module__
'banglaocr.infer'
"""

__version__ = "0.1.0"
__all__ = ["__version__", "prepare_image"]

_LAZY = {"prepare_image": "banglaocr.infer"}
"""Public names and the module that defines them, imported when first used (torch is slow to import)."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'banglaocr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
