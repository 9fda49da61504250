"""Model names: models shipped inside the package, by short name (`tiny` is the project's own small
Bangla reader), and telling a local path from a hub id.

A shipped name works wherever a model is named (`--model tiny`, `model.name_or_path: tiny`) and
means the folder under `banglaocr/models/`. Write `./tiny` for a local folder of that name.

>>> (shipped_model("tiny") / "model.safetensors").is_file()
True
>>> shipped_model("Qwen/Qwen3-VL-2B-Instruct") is None
True
"""

from __future__ import annotations

from pathlib import Path

from banglaocr.errors import UserError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
SHIPPED_MODELS = {
    "tiny": "tiny",  # 2.7 M-parameter Qwen3-VL trained by recipes/tiny_base.yaml (model card: its README.md)
}


SHIPPED_ARCHITECTURES = {
    "qwen3-vl-2b-arch": "qwen3-vl-2b-arch",  # Qwen3-VL-2B-Instruct's config.json, no weights (model.init: random)
}


def architecture_source(name: str) -> str:
    """Where `model.init: random` reads the architecture of `name`: a shipped architecture's folder, else
    `name` (a folder with config.json, or a hub id).

    >>> Path(architecture_source("qwen3-vl-2b-arch"), "config.json").is_file()
    True
    """
    if name in SHIPPED_ARCHITECTURES:
        return str(MODELS_DIR / SHIPPED_ARCHITECTURES[name])
    return model_source(name)


def shipped_model(name: str) -> Path | None:
    """The folder of the shipped model called `name`, or None when `name` is not a shipped name."""
    if name not in SHIPPED_MODELS:
        return None
    folder = MODELS_DIR / SHIPPED_MODELS[name]
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        # Only a broken or partial install gets here (the files are package data).
        raise UserError(f"the shipped model '{name}' is missing from this installation ({folder}); "
                        "reinstall banglaocr")
    return folder


def model_source(name: str) -> str:
    """Where `name` loads from: a shipped model's folder, else `name` itself (a path or hub id).

    >>> model_source("Qwen/Qwen3-VL-2B-Instruct")
    'Qwen/Qwen3-VL-2B-Instruct'
    """
    folder = shipped_model(name)
    return str(folder) if folder is not None else name


def looks_like_path(name: str) -> bool:
    """A name that means a local folder (not a hub id), even though nothing is there.

    >>> looks_like_path("./run"), looks_like_path("/a/b"), looks_like_path("Qwen/Qwen3-VL-2B-Instruct")
    (True, True, False)
    """
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        return True
    # "runs/cpu_demo" has the shape of a hub id; if "runs" is a local folder, a folder was meant.
    head = name.split("/", 1)[0]
    return "/" in name and Path(head).is_dir()
