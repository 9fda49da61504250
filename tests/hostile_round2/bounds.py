"""Inputs that ask for unbounded work: YAML that explodes when built, numbers no field can take, homes of users
that do not exist, files that are no files, and images that are large only once decoded.

Everything is made by code at test time (no binary fixtures in the repository):

- `alias_bomb(levels)`: YAML whose anchors nest `levels` deep, each alias list repeating the one before nine
  times ("billion laughs": 9**levels values once expanded, a few hundred bytes as text) - as a recipe file
  (`bomb_recipe`) and as a flow mapping for a `section.key=value` override (`bomb_value`);
  `deep_nesting(depth)`: `[[[...]]]`; `huge_scalar(chars)`: one string of that many characters.
- `NUMBERS`: overrides whose numbers YAML reads as something no recipe key can take (NaN, infinities, 400-
  and 5,000-digit integers, floats and booleans for integer keys, a date that is no date), each with the key
  its one error line must name and a piece of the message.
- `missing_user()`: a `~name` that names no user of this machine; `HOME_PATHS`: where such a path can go.
- `special_files(root)`: a FIFO in each place banglaocr reads a metadata or input file (a manifest, an
  imagefolder's metadata.jsonl / metadata.csv, a recipe, a synth word list) and a folder named like a
  metadata file; each with the command that reads it and the path its one error line must name.
- `large_images(folder, count, side)`: `count` PNGs of `side` x `side` pixels: white paper with a black bar
  and a stroke (a few KB each on disk, `side`**2 * 4 bytes each once decoded to RGB).
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

TINY_RECIPE = "model: {name_or_path: bounds, init: tiny}\ndata: {source: synth}\n"


# --------------------------------------------------------------------------- YAML


def alias_bomb(levels: int = 9, indent: str = "") -> list[str]:
    """The anchored lines of an alias bomb: `a0` holds nine scalars, each `aN` nine aliases of `a(N-1)`."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{indent}a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return lines


def bomb_recipe(levels: int = 9, under: str = "data.prompt") -> str:
    """A recipe whose key `under` (section.key) holds the alias bomb's last level - a value YAML builds in
    microseconds (aliases are shared) and a deep copy or a repr() expands to 9**levels strings."""
    section, key = under.split(".")
    bomb = "\n".join(alias_bomb(levels, indent="  "))
    return (f"model: {{name_or_path: bounds, init: tiny}}\nlaughs:\n{bomb}\n"
            f"data: {{source: synth}}\n{section}:\n  {key}: *a{levels - 1}\n")


def bomb_value(levels: int = 9) -> str:
    """The alias bomb as one flow mapping: the value of an override `section.key=...`."""
    return "{" + ", ".join(alias_bomb(levels)) + "}"


def deep_nesting(depth: int = 10_000) -> str:
    """`depth` lists inside each other: PyYAML composes them recursively (a RecursionError past ~300)."""
    return "[" * depth + "]" * depth


def huge_scalar(chars: int = 1_000_000) -> str:
    """One plain scalar of `chars` characters: an error message that repeats it would be a megabyte long."""
    return "x" * chars


PYTHON_TAG = "!!python/object/apply:os.system ['touch {marker}']"
"""A tag that makes PyYAML's full loader run a shell command; safe loading refuses it (formatted with a
marker path that must never appear)."""


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class NumberCase:
    override: str
    key: str
    says: str
    """A piece of the one error line."""


NUMBERS = (
    NumberCase("train.lr=.nan", "train.lr", "must be a finite number, got nan"),
    NumberCase("train.lr=.inf", "train.lr", "must be a finite number, got inf"),
    NumberCase("train.lr=-.inf", "train.lr", "must be a finite number, got -inf"),
    NumberCase("train.lr=nan", "train.lr", "must be a finite number"),  # the string 'nan', which float() reads
    NumberCase("train.lr=" + "9" * 400, "train.lr", "must be a finite number, got <a number of 400 digits>"),
    NumberCase("data.image.stretch=" + "9" * 400, "data.image.stretch", "must be a finite number"),
    NumberCase("train.max_steps=.nan", "train.max_steps", "expected int, got nan"),
    NumberCase("train.max_steps=.inf", "train.max_steps", "expected int, got inf"),
    NumberCase("train.max_steps=5.0", "train.max_steps", "expected int, got 5.0"),
    NumberCase("train.max_steps=true", "train.max_steps", "expected int, got True"),
    NumberCase("train.max_steps=1e3", "train.max_steps", "expected int, got '1e3'"),
    NumberCase("train.max_steps=" + "9" * 5000, "train.max_steps", "expected int, got '9999"),
    NumberCase("train.threads=" + "9" * 400, "train.threads", "<a number of 400 digits> does not fit 64 bits"),
    NumberCase("augment.stroke_width=" + "9" * 30, "augment.stroke_width", "does not fit 64 bits"),
    NumberCase("eval.max_samples=" + "9" * 400, "eval.max_samples", "does not fit 64 bits"),
    NumberCase("data.samples_per_class=-" + "9" * 400, "data.samples_per_class", "does not fit 64 bits"),
    NumberCase("train.lr=2024-13-45", "train.lr", "expected float, got '2024-13-45'"),
    NumberCase("data.synth.hand.pen_range=[0, .nan]", "data.synth.hand.pen_range", "must be a finite number"),
)
"""Numbers YAML reads (or cannot read) that no key of a recipe takes: one line naming the key, exit 2."""

ACCEPTED_NUMBERS = (("train.max_steps=0x10", 16), ("train.max_steps=1_000", 1000), ("train.lr=1e-4", 1e-4))
"""YAML 1.1 spellings that are numbers and stay accepted: (override, value of the key)."""


# --------------------------------------------------------------------------- homes of nobody


def missing_user() -> str:
    """A user name this machine does not have (so `~name` cannot be expanded)."""
    for index in range(1000):
        name = f"nobody-banglaocr-{index}"
        try:
            pwd.getpwnam(name)
        except KeyError:
            return name
    raise RuntimeError("every candidate user name exists")


HOME_PATHS = (
    ("train", ("--recipe", "{home}/r.yaml", "--dry-run"), "recipe {home}/r.yaml"),
    ("train", ("--recipe", "cpu_demo", "--dry-run", "--output-dir", "{home}/out"), "--output-dir {home}/out"),
    ("train", ("--dry-run", "--output_dir", "{home}/out"), "--output-dir {home}/out"),
    ("train", ("--recipe", "cpu_demo", "--dry-run", "train.output_dir={home}/out"), "recipe key 'train.output_dir'"),
    ("train", ("--recipe", "cpu_demo", "--dry-run", "data.source={home}/data"), "recipe key 'data.source'"),
    ("train", ("--recipe", "cpu_demo", "--dry-run", "data.synth.dir={home}/synth"), "recipe key 'data.synth.dir'"),
    ("train", ("--recipe", "cpu_demo", "--dry-run", "model.init=pretrained", "model.name_or_path={home}/m"),
     "recipe key 'model.name_or_path'"),
    ("eval", ("--model", "{home}/m", "--dataset", "x"), "--model {home}/m"),
    ("eval", ("--model", "tiny", "--adapter", "{home}/a", "--dataset", "x"), "--adapter {home}/a"),
    ("eval", ("--model", "tiny", "--dataset", "{home}/data"), "'data.source' {home}/data"),
    ("eval", ("--model", "tiny", "--recipe", "{home}/r.yaml"), "recipe {home}/r.yaml"),
    ("predict", ("--model", "{home}/m", "README.md"), "--model {home}/m"),
    ("predict", ("--model", "tiny", "--adapter", "{home}/a", "README.md"), "--adapter {home}/a"),
    ("merge-lora", ("--adapter", "{home}/a", "--out", "merged"), "--adapter {home}/a"),
    ("merge-lora", ("--adapter", "runs/x", "--base", "{home}/b", "--out", "merged"), "--base {home}/b"),
    ("doctor", ("--recipe", "{home}/r.yaml"), "recipe {home}/r.yaml"),
    ("scan-dims", ("--dataset", "{home}/data"), "data source {home}/data"),
    ("scan-dims", ("--recipe", "{home}/r.yaml"), "recipe {home}/r.yaml"),
    ("scan-dims", ("--recipe", "cpu_demo", "--tokenizer", "{home}/t"), "--tokenizer {home}/t"),
    ("scan-dims", ("--recipe", "cpu_demo", "--write", "{home}/budget.yaml"), "--write {home}/budget.yaml"),
)
"""(command, arguments, what the one error line names) for a path under the home of a user that does not
exist; `{home}` stands for `~name`."""


# --------------------------------------------------------------------------- files that are no files


@dataclass(frozen=True)
class SpecialFile:
    name: str
    command: tuple[str, ...]
    """The banglaocr command that reads it."""
    path: Path
    """What the one error line names."""
    kind: str


def special_files(root: Path) -> list[SpecialFile]:
    """A FIFO (nothing ever writes to it: reading one would wait forever) in every place banglaocr reads a
    metadata or input file, and a folder named like a metadata file."""
    root.mkdir(parents=True, exist_ok=True)

    def fifo(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        return path

    manifest = fifo(root / "manifest.jsonl")
    csv_manifest = fifo(root / "manifest.csv")
    split_metadata = fifo(root / "folder" / "train" / "metadata.jsonl")
    root_metadata = fifo(root / "rootfolder" / "metadata.csv")
    (root / "dirfolder" / "test" / "metadata.jsonl").mkdir(parents=True)
    recipe = fifo(root / "recipe.yaml")
    words = fifo(root / "words.txt")
    return [
        SpecialFile("manifest as --dataset", ("eval", "--model", "tiny", "--dataset", str(manifest)), manifest, "FIFO"),
        SpecialFile("csv manifest to scan", ("scan-dims", "--dataset", str(csv_manifest)), csv_manifest, "FIFO"),
        SpecialFile("split metadata", ("eval", "--model", "tiny", "--dataset", str(root / "folder")), split_metadata,
                    "FIFO"),
        SpecialFile("root metadata", ("scan-dims", "--dataset", str(root / "rootfolder")), root_metadata, "FIFO"),
        SpecialFile("metadata folder", ("eval", "--model", "tiny", "--dataset", str(root / "dirfolder")),
                    root / "dirfolder" / "test" / "metadata.jsonl", "folder"),
        SpecialFile("recipe", ("train", "--recipe", str(recipe), "--dry-run"), recipe, "FIFO"),
        SpecialFile("word list", ("synth", "--words", str(words), "--out", str(root / "synth-out"), "--n", "10"),
                    words, "FIFO"),
    ]


# --------------------------------------------------------------------------- images large once decoded


def large_images(folder: Path, count: int, side: int) -> list[Path]:
    """`count` `side` x `side` greyscale PNGs of white paper with a black bar and a stroke (a few KB each:
    one colour compresses well), each a little different so none is a copy of another - the images
    benchmarks/predict_memory.py measures, drawn by its `write_images`."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)  # benchmarks/ is run from a checkout, not installed
    from benchmarks.predict_memory import write_images

    return write_images(folder, count, side)


def decoded_bytes(side: int) -> int:
    """Bytes one `side` x `side` image takes decoded to RGB (Pillow: 4 bytes a pixel)."""
    return side * side * 4
