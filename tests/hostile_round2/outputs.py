"""Hostile outputs and names: what a user already has where `--out` points, and file names no row may break on.

Everything is built from code into a temporary folder (no binary fixtures in the repository):

- `BREAKS`: every character `str.splitlines` breaks a line at, plus tab; `RAW_BYTES`: name parts that are
  not UTF-8 (a lone 0xff, a lone continuation byte, a cut-off sequence). `hostile_names()` gives one name
  per hazard (each break character, each byte run, a backslash that looks like an escape, CSV's comma and
  quote, a Bangla name) as `os.fsdecode`d text, the way Python gets names from argv, globs and stdin.
- `write_word_images(folder, names)`: a small ink-on-paper word image under each name (32 px high, so a
  tiny model reads dozens in a second); returns the paths in the given order.
- `USER_FILES`: what a user may have at an output path - notes, a CSV and a JSON lines file that look like
  predict's (but banglaocr did not write them), an empty file, an impostor marker - built by `user_file`.
- `SPECIAL_OUTPUTS`: things that are no regular file - a FIFO, a symlink loop, a broken symlink - built
  by `special_output`; `user_folder(path)`: a folder of the user's (a file and a subfolder).
- `fake_adapter(path)`: the files merge-lora's output check reads (adapter_config.json naming `base/`), enough
  for every refusal that must come before a model loads.
- `snapshot(path)`: everything under a path (bytes, modes, link targets) to prove it untouched.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\t")
"""What `str.splitlines` breaks a line at (\\r\\n is \\r then \\n), and the field separator of text rows."""
RAW_BYTES = (b"\xff", b"\x80", b"\xe0\xa6", b"\xc3(")
"""Name parts that are not UTF-8: a byte no UTF-8 has, a lone continuation byte, a cut-off Bangla letter
(U+09xx starts with e0 a6), a lead byte followed by ASCII."""
LOOKALIKES = ("a\\nb", "back\\slash\\", 'quote"comma,', "শব্দ ছবি", " lead and trail ")
"""Names that look like escapes, hold CSV's specials, Bangla and spaces."""


def hostile_names() -> list[str]:
    """One file name per hazard, as Python holds it (bytes that are not UTF-8 as surrogates)."""
    names = [f"w{index:02d}{char}x.png" for index, char in enumerate(BREAKS)]
    names += [os.fsdecode(b"b%02d" % index + raw + b".png") for index, raw in enumerate(RAW_BYTES)]
    names += [f"l{index:02d}{text}.png" for index, text in enumerate(LOOKALIKES)]
    return names


def _word_image(rng: random.Random) -> Image.Image:
    width = rng.choice([48, 64, 96, 128])
    image = Image.new("L", (width, 32), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 4)):
        x = rng.randint(2, width - 10)
        draw.rectangle([x, rng.randint(4, 12), x + rng.randint(3, 8), rng.randint(18, 28)], fill=0)
    return image


def write_word_images(folder: Path, names: list[str], seed: int = 0) -> list[str]:
    """A word image under each of `names` in `folder`; the paths (as text) in the order of `names`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for name in names:
        path = os.path.join(str(folder), name)
        with open(path, "wb") as handle:  # open() takes the surrogates back to the original bytes
            _word_image(rng).save(handle, format="PNG")
        paths.append(path)
    return paths


USER_FILES = {
    "notes.txt": "my notes\nline two\n",
    "rows.csv": "file,prediction,error,blank,confidence,flagged\nmine.png,আমার,,,,\n",  # predict's header, not predict's file
    "rows.jsonl": '{"file": "mine.png", "prediction": "আমার"}\n',  # predict's rows, no marker beside them
    "last-line.txt": "a.png\tক\nb.png\tখ",  # a last line without a newline: --resume must not cut it
}


def user_file(folder: Path, name: str) -> Path:
    """The user's file `name` of `USER_FILES` in `folder`."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USER_FILES[name], encoding="utf-8")
    return path


def impostor_marker(out: Path) -> Path:
    """A user's file where predict keeps its marker for `out` (`out.banglaocr.json`)."""
    marker = out.with_name(out.name + ".banglaocr.json")
    marker.write_text(json.dumps({"my": "settings"}), encoding="utf-8")
    return marker


SPECIAL_OUTPUTS = ("fifo", "symlink loop", "broken symlink")


def special_output(folder: Path, kind: str) -> Path:
    """An output path that is no regular file, of `kind` in `SPECIAL_OUTPUTS`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / kind.replace(" ", "-")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink loop":
        os.symlink(path.name + "-b", path)
        os.symlink(path.name, folder / (path.name + "-b"))
    else:
        os.symlink(folder / "nowhere" / "target", path)
    return path


def user_folder(path: Path) -> Path:
    """A folder of the user's: a file and a subfolder with a file."""
    path = Path(path)
    (path / "sub").mkdir(parents=True, exist_ok=True)
    (path / "keep.txt").write_text("the user's", encoding="utf-8")
    (path / "sub" / "deep.txt").write_text("also the user's", encoding="utf-8")
    return path


def fake_adapter(path: Path) -> Path:
    """An adapter folder as far as merge-lora reads it before loading a model: a LoRA adapter_config.json
    naming a base inside (`base/`), and a small valid adapter_model.safetensors (weights of no model)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    (path / "base").mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
              "base_model_name_or_path": "base"}
    (path / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file({"lora_A": torch.zeros(4, 8)}, str(path / "adapter_model.safetensors"))
    (path / "base" / "config.json").write_text("{}", encoding="utf-8")
    return path


def snapshot(path: Path) -> dict:
    """Every entry under `path` (itself included): bytes of files, targets of links, kinds of the rest."""
    path = Path(path)
    entries = [path] + (sorted(path.rglob("*")) if path.is_dir() and not path.is_symlink() else [])
    found = {}
    for entry in entries:
        if entry.is_symlink():
            found[str(entry)] = ("link", os.readlink(entry))
        elif entry.is_file():
            found[str(entry)] = ("file", entry.read_bytes(), entry.stat().st_mtime_ns)
        elif entry.exists():
            found[str(entry)] = ("other", entry.stat().st_mode)
    return found
