"""The model card's "Use" script reads like `banglaocr predict`, with plain transformers and without banglaocr.

The script is taken VERBATIM from the README.md of the folders banglaocr writes (a LoRA adapter's best/
with its tiny base inside, and the merged folder `merge-lora` makes of it), saved as a file and run from
inside each folder in the interop venv (tests/interop/venv.py: plain transformers + torchvision + peft,
no banglaocr) on 20 freshly rendered word images; its output must equal what `banglaocr predict` prints
for them, byte for byte. The adapter is the tiny LoRA run of tests/test_merge.py (r=4, 300 steps at
lr 1e-2: it reads different images differently, with logit gaps far above float noise).

Without the interop venv those two tests skip (fail under CI); the others check in this process that
the script's inlined steps - decode, ink box, resize, normalise - equal banglaocr's own, on inputs where
a slip would show (odd sizes, tight crop, stretch, transparency, EXIF rotation, hostile text).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from interop.venv import clean_env, interop_python as find_interop_python

runner = CliRunner()
IMAGE_COUNT = 20
SNIPPET_STEPS = ("load_image", "ink_box", "resize", "normalize")
"""The script's functions that mirror banglaocr's pixel and text path (checked here against it)."""


def card_snippet(folder: Path) -> str:
    """The Python code block of the "## Use" section of `folder/README.md`, exactly as written there."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    use = card[card.index("\n## Use\n"):]
    found = re.search(r"\n```python\n(.*?)\n```\n", use, flags=re.DOTALL)
    assert found, "the model card has no python block in its Use section"
    return found.group(1) + "\n"


def snippet_steps(code: str) -> dict:
    """The script's imports and step functions (`SNIPPET_STEPS`), executed here without its model loading."""
    tree = ast.parse(code)
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
            and not any(alias.name.startswith(("transformers", "torch")) for alias in node.names)
            and getattr(node, "module", "") not in ("transformers", "torch")]
    kept += [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in SNIPPET_STEPS]
    namespace: dict = {}
    exec(compile(ast.Module(body=kept, type_ignores=[]), "card-snippet", "exec"), namespace)  # noqa: S102
    assert all(name in namespace for name in SNIPPET_STEPS), sorted(namespace)
    return namespace


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def interop_python() -> str:
    """First in the interop tests' arguments: a skip is decided before anything is trained."""
    return find_interop_python()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training output folder with a LoRA adapter (best/) on a tiny random base (best/base/)."""
    out = tmp_path_factory.mktemp("card") / "run"
    helpers.train(out, "lora.r=4", "lora.alpha=8", "lora.dropout=0.0", "train.max_steps=300",
                  "train.eval_steps=300", "train.save_steps=0", "train.lr=1e-2")
    assert (out / "best" / "adapter_config.json").is_file() and (out / "best" / "base" / "config.json").is_file()
    return out


@pytest.fixture(scope="module")
def merged(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("card-merged") / "merged"
    with helpers.one_thread():
        result = runner.invoke(app, ["merge-lora", "--adapter", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory) -> list[Path]:
    """20 word images rendered for this test (not the training images), in a folder of their own."""
    from banglaocr.data.synth import write_synthetic_dataset

    folder = tmp_path_factory.mktemp("card-words")
    write_synthetic_dataset(folder, n=IMAGE_COUNT, seed=2027, splits=(1.0, 0.0, 0.0))
    paths = sorted(folder.rglob("*.png"))
    assert len(paths) == IMAGE_COUNT
    return paths


def predict_output(folder: Path, paths: list[Path]) -> str:
    with helpers.one_thread():
        result = runner.invoke(app, ["predict", "--model", str(folder), *map(str, paths)])
    assert result.exit_code == 0, result.output
    # file<TAB>prediction: the card's plain-transformers script prints no confidence (predict's third field).
    return "".join("\t".join(line.split("\t")[:2]) + "\n" for line in result.stdout.splitlines())


def run_snippet(python: str, folder: Path, paths: list[Path], tmp_path: Path) -> str:
    """The card's script, saved as read_words.py and run from inside `folder` as the card says."""
    script = tmp_path / "read_words.py"
    script.write_text(card_snippet(folder), encoding="utf-8")
    probe = subprocess.run([python, "-c", "import banglaocr"], cwd=folder, env=clean_env(tmp_path),
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'banglaocr'" in probe.stderr
    done = subprocess.run([python, str(script), *map(str, paths)], cwd=folder, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# --------------------------------------------------------------------------- the script, run verbatim


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_card_script_prints_what_predict_prints(interop_python, kind, run_dir, merged, image_paths, tmp_path):
    folder = run_dir / "best" if kind == "adapter" else merged
    expected = predict_output(folder, image_paths)
    printed = run_snippet(interop_python, folder, image_paths, tmp_path)
    assert printed == expected
    readings = [line.split("\t", 1)[1] for line in expected.splitlines()]
    assert len(readings) == IMAGE_COUNT and len(set(readings)) >= 3, f"too alike to prove much: {readings}"


def test_without_the_resize_the_model_would_see_other_pixels(run_dir, image_paths):
    """What the script's resize step is for: left to itself, the folder's image processor (smart_resize with
    its pixel limits) sizes most of these crops differently from banglaocr."""
    import json

    from banglaocr import prepare_image
    from banglaocr.data.pixels import QwenResize

    config = json.loads((run_dir / "best" / "preprocessor_config.json").read_text(encoding="utf-8"))["size"]
    processor_geometry = QwenResize(config["shortest_edge"], config["longest_edge"])
    differ = 0
    for path in image_paths:
        raw = Image.open(path)
        prepared = prepare_image(path, run_dir)
        # the prepared crop passes the processor unchanged; the raw crop does not become it
        assert processor_geometry.size(prepared.image.height, prepared.image.width) == \
            (prepared.image.height, prepared.image.width)
        differ += processor_geometry.size(raw.height, raw.width) != (prepared.image.height, prepared.image.width)
    assert differ >= IMAGE_COUNT // 2, differ


# --------------------------------------------------------------------------- its steps equal banglaocr's


def _odd_crops() -> list[Image.Image]:
    """Ink on paper at awkward sizes, in the modes a scan arrives in."""
    rng = np.random.default_rng(3)
    crops = []
    for index, (width, height) in enumerate([(173, 41), (300, 100), (33, 60), (901, 37), (64, 64), (15, 90)]):
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x0, y0 = int(rng.integers(0, width - 2)), int(rng.integers(0, height - 2))
            draw.line((x0, y0, int(rng.integers(x0, width)), int(rng.integers(y0, height))), fill=(20, 20, 20),
                      width=2)
        crops.append(image.convert(("RGB", "L", "RGBA", "P", "RGB", "L")[index]))
    return crops


def _saved(image: Image.Image, folder: Path, name: str, **options) -> Path:
    path = folder / name
    image.save(path, **options)
    return path


def test_script_steps_give_the_pixels_banglaocr_shows_the_model(tmp_path):
    """decode + resize of the script == `banglaocr.prepare_image`, pixel for pixel, under several budgets."""
    from banglaocr import prepare_image
    from banglaocr.config import ImageConfig
    from banglaocr.infer import ReadSettings, save_read_settings
    from banglaocr.model.tokenizers import build_char_tokenizer

    steps = snippet_steps(_card_code(tmp_path))
    transparent = Image.new("RGBA", (120, 40), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).rectangle((20, 10, 90, 30), fill=(0, 0, 0, 255))
    sideways = Image.new("RGB", (40, 130), "white")
    ImageDraw.Draw(sideways).rectangle((10, 20, 30, 100), fill="black")
    exif = sideways.getexif()
    exif[0x0112] = 6  # stored rotated: a viewer (and banglaocr) turns it upright
    paths = [_saved(image, tmp_path, f"crop{i}.png") for i, image in enumerate(_odd_crops())]
    paths += [_saved(transparent, tmp_path, "transparent.png"), _saved(sideways, tmp_path, "rotated.jpg", exif=exif)]
    budgets = [ImageConfig(), ImageConfig(height=32, max_width=384, stretch=2.0, tight_crop=True),
               ImageConfig(height=96, min_width=64, max_width=1024, stretch=1.5)]
    for number, budget in enumerate(budgets):
        folder = tmp_path / f"model{number}"
        folder.mkdir()
        save_read_settings(folder, ReadSettings(budget, "লেখো", 8), tokenizer=build_char_tokenizer())
        (folder / "config.json").write_text("{}", encoding="utf-8")  # enough for a folder to name a model
        settings = steps["json"].loads((folder / "banglaocr.json").read_text(encoding="utf-8"))
        for path in paths:
            ours = steps["resize"](steps["load_image"](path), settings["image"])
            theirs = prepare_image(path, folder).image
            assert ours.size == theirs.size and ours.mode == theirs.mode == "RGB", (path.name, budget)
            assert np.array_equal(np.asarray(ours), np.asarray(theirs)), (path.name, budget)


def test_script_finds_blank_images_and_ink_like_banglaocr(tmp_path):
    from banglaocr.data.pixels import ink_box
    from banglaocr.infer import _is_blank

    steps = snippet_steps(_card_code(tmp_path))
    blank_like = [Image.new("RGB", (64, 32), "white"), Image.new("RGB", (200, 40), (90, 90, 90)),
                  Image.new("RGB", (1, 1), "black")]
    for image in [*_odd_crops(), *blank_like]:
        rgb = image.convert("RGB")
        assert steps["ink_box"](rgb) == ink_box(rgb)
        inverted = Image.eval(rgb, lambda v: 255 - v)
        script_blank = steps["ink_box"](rgb) is None and steps["ink_box"](inverted) is None
        assert script_blank == _is_blank(rgb)


def test_script_normalises_text_like_banglaocr(tmp_path):
    from banglaocr.text import normalize

    steps = snippet_steps(_card_code(tmp_path))
    samples = ["  আমি\u200c  গান গাই |  ", "বাংলায\u09bc", "উত্\u200dস", "ড\u09bc ঢ\u09bc", "\ufeffক\u200bল||ম",
               "কে\u09be", "ক\u200dে\u200cা", "Hello\t\nworld ", "", "॥ । | ||| ", "য\u09bc\u09cd"]
    for text in samples:
        assert steps["normalize"](text) == normalize(text), repr(text)


def _card_code(tmp_path: Path) -> str:
    """The snippet of a freshly written card (the same text every card carries)."""
    from banglaocr.model_card import write_model_card

    folder = tmp_path / "card"
    folder.mkdir(exist_ok=True)
    write_model_card(folder, base_model=None, kind="merged")
    return card_snippet(folder)


# --------------------------------------------------------------------------- the cards and folders


def test_every_card_carries_the_script_and_every_folder_what_it_reads(run_dir, merged, tmp_path):
    import json

    from banglaocr.model_card import READ_SNIPPET, write_model_card

    for folder in (run_dir / "best", run_dir / "final", merged):
        assert card_snippet(folder) == READ_SNIPPET, folder
        for name in ("banglaocr.json", "generation_config.json", "preprocessor_config.json",
                     "video_preprocessor_config.json", "chat_template.jinja", "tokenizer.json"):
            assert (folder / name).is_file(), (folder, name)
        generation = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
        settings = json.loads((folder / "banglaocr.json").read_text(encoding="utf-8"))
        assert (generation["do_sample"], generation["eos_token_id"], generation["max_new_tokens"]) == \
            (False, 2, settings["max_new_tokens"])  # greedy, <|im_end|> of the char tokenizer
    card = write_model_card(tmp_path, base_model="tiny", kind="adapter").read_text(encoding="utf-8")
    assert "copy that folder here as `tiny/`" in card  # the shipped base has no hub id to load from
