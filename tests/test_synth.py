"""Synthetic word images (banglaocr.data.synth)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from banglaocr.data import synth
from banglaocr.data.synth import (
    SPLITS,
    bundled_fonts,
    bundled_words,
    font_name,
    render_word,
    write_synthetic_dataset,
)
from banglaocr.errors import UserError
from banglaocr.text import normalize


def read_split(out: Path, split: str) -> list[dict]:
    lines = (out / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def files_by_name(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "out"
    write_synthetic_dataset(out, n=40, seed=3, holdout_font="Lohit-Bengali", workers=1)
    return out


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tmp_path, dataset):
    again = tmp_path / "again"
    write_synthetic_dataset(again, n=40, seed=3, holdout_font="Lohit-Bengali", workers=2)
    assert files_by_name(again) == files_by_name(dataset)


def test_different_seed_gives_different_words_and_pixels(tmp_path, dataset):
    other = tmp_path / "other"
    write_synthetic_dataset(other, n=40, seed=4, holdout_font="Lohit-Bengali", workers=1)
    assert read_split(other, "train") != read_split(dataset, "train")
    assert (other / "train" / "000000.png").read_bytes() != (dataset / "train" / "000000.png").read_bytes()


def test_render_word_is_deterministic_under_its_generator():
    font = bundled_fonts()[0]
    first = render_word("স্ত্রী", font, np.random.default_rng(7))
    second = render_word("স্ত্রী", font, np.random.default_rng(7))
    third = render_word("স্ত্রী", font, np.random.default_rng(8))
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != third.tobytes()


def test_layout_and_metadata_schema(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == ["synth.json", "test", "train", "val"]
    font_names = {font_name(p) for p in bundled_fonts()}
    seen = []
    for split in SPLITS:
        rows = read_split(dataset, split)
        pngs = sorted(p.name for p in (dataset / split).glob("*.png"))
        assert sorted(row["file_name"] for row in rows) == pngs
        for row in rows:
            assert set(row) == {"file_name", "text", "font"}
            assert row["text"] == normalize(row["text"]) != ""
            assert row["font"] in font_names
            with Image.open(dataset / split / row["file_name"]) as image:
                assert image.mode == "RGB" and image.width > 4 and image.height > 4
        seen += [row["file_name"] for row in rows]
    assert len(seen) == len(set(seen)) == 40  # file names are unique across splits


def test_split_sizes_and_returned_counts(tmp_path):
    result = write_synthetic_dataset(tmp_path / "o", n=20, seed=0, splits=(0.5, 0.25, 0.25), workers=1)
    assert result["splits"] == {"train": 10, "val": 5, "test": 5}
    assert sum(sum(per_split.values()) for per_split in result["fonts"].values()) == 20
    for split in SPLITS:
        assert len(read_split(tmp_path / "o", split)) == result["splits"][split]
        assert sum(per_split[split] for per_split in result["fonts"].values()) == result["splits"][split]
    info = json.loads((tmp_path / "o" / "synth.json").read_text(encoding="utf-8"))
    assert info["splits"] == result["splits"] and info["seed"] == 0


def test_holdout_font_only_in_val_and_test(dataset):
    assert all(row["font"] != "Lohit-Bengali" for row in read_split(dataset, "train"))
    assert any(row["font"] == "Lohit-Bengali" for row in read_split(dataset, "val"))
    assert any(row["font"] == "Lohit-Bengali" for row in read_split(dataset, "test"))


def test_splits_share_no_word(dataset):
    words = [{row["text"] for row in read_split(dataset, split)} for split in SPLITS]
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])


def test_unknown_holdout_font_lists_the_available_names(tmp_path):
    with pytest.raises(UserError, match="Lohit-Bengali") as err:
        write_synthetic_dataset(tmp_path / "o", n=5, seed=0, holdout_font="Comic-Sans")
    assert "Comic-Sans" in str(err.value)
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are checked


def test_refuses_without_raqm(tmp_path, monkeypatch):
    real_check = synth.features.check
    monkeypatch.setattr(synth.features, "check", lambda name: False if name == "raqm" else real_check(name))
    with pytest.raises(UserError, match="fribidi"):
        write_synthetic_dataset(tmp_path / "o", n=5, seed=0)
    with pytest.raises(UserError, match="RAQM"):
        render_word("বাংলা", bundled_fonts()[0], np.random.default_rng(0))


def test_refuses_a_non_empty_folder_and_overwrites_only_its_own_output(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        write_synthetic_dataset(foreign, n=5, seed=0)
    with pytest.raises(UserError, match="not a synth output"):
        write_synthetic_dataset(foreign, n=5, seed=0, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "out"
    write_synthetic_dataset(out, n=20, seed=0, workers=1)
    with pytest.raises(UserError, match="--overwrite"):
        write_synthetic_dataset(out, n=10, seed=1, workers=1)
    write_synthetic_dataset(out, n=10, seed=1, overwrite=True, workers=1)
    assert len(list(out.rglob("*.png"))) == 10  # no stale images from the first run


def test_own_fonts_and_words(tmp_path):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for path in bundled_fonts()[:2]:
        shutil.copy(path, fonts / path.name)
    words = tmp_path / "words.txt"
    words.write_text("বাংলায\u09bc\nবাংলা\u09df\n\nআমি\u200c\n", encoding="utf-8")
    result = write_synthetic_dataset(tmp_path / "o", n=6, seed=0, fonts_dir=fonts, words_file=words, workers=1)
    assert result["words"] == 2  # the two spellings of বাংলায় are one word once normalised
    assert set(result["fonts"]) == {font_name(p) for p in bundled_fonts()[:2]}
    texts = {row["text"] for split in SPLITS for row in read_split(tmp_path / "o", split)}
    assert texts == {"বাংলা\u09df", "আমি"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fonts_dir": "/no/such/fonts"}, "no such folder"),
        ({"words_file": "/no/such/words.txt"}, "no such file"),
        ({"n": 0}, "at least 1"),
        ({"seed": -1}, "seed"),
        ({"splits": (0.5, 0.5, 0.5)}, "summing to 1"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    arguments = {"n": 5, "seed": 0, **kwargs}
    with pytest.raises(UserError, match=message):
        write_synthetic_dataset(tmp_path / "o", **arguments)


def test_folder_without_fonts_and_broken_font(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no font files"):
        write_synthetic_dataset(tmp_path / "o", n=5, seed=0, fonts_dir=tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "Bad.ttf").write_bytes(b"not a font")
    with pytest.raises(UserError, match="cannot load"):
        write_synthetic_dataset(tmp_path / "o", n=5, seed=0, fonts_dir=tmp_path / "broken")


def test_holdout_of_the_only_font_is_refused(tmp_path):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    shutil.copy(bundled_fonts()[0], fonts)
    only = font_name(bundled_fonts()[0])
    with pytest.raises(UserError, match="only font"):
        write_synthetic_dataset(tmp_path / "o", n=5, seed=0, fonts_dir=fonts, holdout_font=only)


def test_bundled_words_are_normalised_unique_and_ordered():
    words = bundled_words()
    assert len(words) == len(set(words)) > 40_000
    assert all(word == normalize(word) and word for word in words[:2000])


def test_loads_as_an_imagefolder_data_set(dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(dataset), cache_dir=str(tmp_path / "cache"))
    assert {name: len(part) for name, part in loaded.items()} == {"train": 32, "validation": 4, "test": 4}
    assert set(loaded["train"].column_names) == {"image", "text", "font"}


def test_short_items_replace_a_fraction_of_words_deterministically(tmp_path):
    """short_fraction > 0: about that share of samples are short items; same seed, same files; holdout kept."""
    from banglaocr.data.synth import short_items, write_synthetic_dataset

    shorts = set(short_items())
    first = write_synthetic_dataset(tmp_path / "a", n=200, seed=3, holdout_font="Lohit-Bengali", short_fraction=0.5)
    again = write_synthetic_dataset(tmp_path / "b", n=200, seed=3, holdout_font="Lohit-Bengali", short_fraction=0.5)
    assert first["short_fraction"] == 0.5
    rows = []
    for split in ("train", "val", "test"):
        a = (tmp_path / "a" / split / "metadata.jsonl").read_text(encoding="utf-8")
        assert a == (tmp_path / "b" / split / "metadata.jsonl").read_text(encoding="utf-8")
        rows += [(split, json.loads(line)) for line in a.splitlines()]
    share = sum(row["text"] in shorts for _, row in rows) / len(rows)
    assert 0.35 < share < 0.65
    assert all(row["font"] != "Lohit-Bengali" for split, row in rows if split == "train")
    assert again["splits"] == first["splits"]


def test_short_fraction_zero_keeps_the_word_plan(tmp_path):
    """The short-item draw has a stream of its own: with 0 nothing changes, with > 0 the other samples keep
    their words."""
    from banglaocr.data.synth import short_items, write_synthetic_dataset

    shorts = set(short_items())
    write_synthetic_dataset(tmp_path / "plain", n=60, seed=4)
    write_synthetic_dataset(tmp_path / "short", n=60, seed=4, short_fraction=0.3)
    plain = [json.loads(line) for line in (tmp_path / "plain" / "train" / "metadata.jsonl").read_text(
        encoding="utf-8").splitlines()]
    short = [json.loads(line) for line in (tmp_path / "short" / "train" / "metadata.jsonl").read_text(
        encoding="utf-8").splitlines()]
    kept = [(p, s) for p, s in zip(plain, short) if s["text"] not in shorts]
    assert kept and all(p["text"] == s["text"] and p["font"] == s["font"] for p, s in kept)


def test_clean_render_is_black_on_white_without_flaws():
    font = next(p for p in bundled_fonts() if font_name(p) == "NotoSansBengali-Regular")
    clean = np.asarray(render_word("বাংলা", font, np.random.default_rng(0), clean=True))
    degraded = np.asarray(render_word("বাংলা", font, np.random.default_rng(0)))
    # White paper to the edge (no tilt fill, noise or JPEG), black ink at the darkest, grey only at edges.
    border = np.concatenate([clean[0], clean[-1], clean[:, 0], clean[:, -1]])
    assert (border == 255).all()
    assert clean.min() == 0 and set(np.unique(clean[..., 0] - clean[..., 2])) == {0}
    assert not (np.concatenate([degraded[0], degraded[-1]]) == 255).all()


def test_only_fonts_and_clean_are_recorded_and_restrict_the_fonts(tmp_path):
    out = tmp_path / "galada"
    counts = write_synthetic_dataset(out, n=20, seed=0, only_fonts=["Galada-Regular"], clean=True, workers=1)
    assert set(counts["fonts"]) == {"Galada-Regular"}
    assert {row["font"] for split in SPLITS for row in read_split(out, split)} == {"Galada-Regular"}
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["fonts_used"] == ["Galada-Regular"] and info["clean"] is True
    image = np.asarray(Image.open(out / "train" / "000000.png"))
    assert (image[0] == 255).all()


def test_only_fonts_with_an_unknown_name_lists_the_fonts(tmp_path):
    with pytest.raises(UserError, match="font 'NoSuchFont' is not among the fonts: .*Galada-Regular"):
        write_synthetic_dataset(tmp_path / "x", n=10, seed=0, only_fonts=["NoSuchFont"])


def test_holdout_must_be_among_the_chosen_fonts(tmp_path):
    with pytest.raises(UserError, match="holdout font 'Galada-Regular' is not among the fonts"):
        write_synthetic_dataset(tmp_path / "x", n=10, seed=0, only_fonts=["Lohit-Bengali", "Mina-Bold"],
                                holdout_font="Galada-Regular")


def test_a_hand_changes_every_image_and_a_plain_hand_changes_nothing(tmp_path):
    from banglaocr.config import HandConfig

    font = next(p for p in bundled_fonts() if font_name(p) == "Galada-Regular")
    plain = render_word("আগ্রহীদের", font, np.random.default_rng(4))
    same = render_word("আগ্রহীদের", font, np.random.default_rng(4), hand=HandConfig())
    assert plain.tobytes() == same.tobytes()
    for hand in (HandConfig(slant=-0.35), HandConfig(pen=1), HandConfig(wobble=2.5)):
        written = render_word("আগ্রহীদের", font, np.random.default_rng(4), hand=hand)
        assert written.tobytes() != plain.tobytes(), hand
    # a broader pen puts more ink on the page (clean renders: no noise to blur the count)
    thin = np.asarray(render_word("আগ্রহীদের", font, np.random.default_rng(4), clean=True).convert("L"))
    broad = np.asarray(render_word("আগ্রহীদের", font, np.random.default_rng(4), clean=True,
                                   hand=HandConfig(pen=1)).convert("L"))
    assert (broad < 128).sum() > 1.3 * (thin < 128).sum()
    # a slant leans the ink: the image gets wider by about |slant| x height
    slanted = render_word("আগ্রহীদের", font, np.random.default_rng(4), clean=True, hand=HandConfig(slant=-0.4))
    assert slanted.width > thin.shape[1]

    out = tmp_path / "hand"
    write_synthetic_dataset(out, n=10, seed=0, hand=HandConfig(slant=-0.35, pen=1, wobble=2.5), workers=1)
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert {key: info["hand"][key] for key in ("slant", "pen", "wobble")} == {"slant": -0.35, "pen": 1, "wobble": 2.5}
    assert info["hand"]["simulate"] == 0.0


# --------------------------------------------------------------------------- pixels that must not move

# Pixel hashes of renders without a simulated hand, as the code before the simulated hand and the
# variable fonts drew them (Pillow 13.0.0 with its bundled FreeType/RAQM): the shipped base's data,
# the CPU demo's published numbers and every recorded synth folder depend on these pixels.
PLAIN_RENDERS = {
    ("স্ত্রী", "NotoSansBengali-Regular.ttf", 7, False, None): "1915208c5d0ea70c",
    ("আগ্রহীদের", "Galada-Regular.woff2", 4, False, None): "3064bb6b11fb36c1",
    ("কর্মক্ষেত্রে", "Lohit-Bengali.ttf", 1, True, None): "ff095065c80d07f6",
    ("বাংলা", "Atma-Bold.woff2", 2, False, (-0.35, 1, 2.5)): "5025512e0dbba4bb",
}


@pytest.mark.parametrize(("word", "font", "seed", "clean", "hand"), list(PLAIN_RENDERS))
def test_renders_without_a_simulated_hand_keep_their_pixels(word, font, seed, clean, hand):
    import hashlib

    from banglaocr.config import HandConfig

    writer = HandConfig(slant=hand[0], pen=hand[1], wobble=hand[2]) if hand else None
    image = render_word(word, synth.ASSETS / "fonts" / font, np.random.default_rng(seed), clean=clean, hand=writer)
    assert hashlib.sha256(image.tobytes()).hexdigest()[:16] == PLAIN_RENDERS[(word, font, seed, clean, hand)]


def test_a_cpu_demo_like_data_set_keeps_its_pixels(tmp_path):
    """Galada in the demo's writer's hand: adding fonts and hand options changed none of its images."""
    import hashlib

    from banglaocr.config import HandConfig

    out = tmp_path / "demo"
    write_synthetic_dataset(out, n=20, seed=0, only_fonts=["Galada-Regular"],
                            hand=HandConfig(slant=-0.35, pen=1, wobble=2.5), workers=1)
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*.png")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest()[:16] == "ef9524e078f6c8b8"


# --------------------------------------------------------------------------- the simulated hand

SIMULATED = dict(simulate=1.0, jitter=0.8, pen_range=[-0.5, 2.0], pressure=0.6, bleed=0.4, breaks=0.4, warp=0.08)


def _font(name: str) -> Path:
    return next(p for p in bundled_fonts() if font_name(p) == name)


def _ink(image) -> int:
    return int((np.asarray(image.convert("L")) < 128).sum())


def test_simulated_hand_is_deterministic_and_changes_the_image():
    from banglaocr.config import HandConfig

    hand = HandConfig(**SIMULATED)
    font = _font("NotoSansBengali-Regular")
    first = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(3), hand=hand)
    again = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(3), hand=hand)
    other = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(4), hand=hand)
    plain = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(3))
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes() and first.tobytes() != plain.tobytes()


@pytest.mark.parametrize("effect", ["jitter", "warp", "pen_range", "pressure", "bleed", "breaks"])
def test_each_simulated_effect_alone_changes_a_clean_render(effect):
    from banglaocr.config import HandConfig

    value = {"jitter": 1.0, "warp": 0.12, "pen_range": [1.5, 2.0], "pressure": 1.0, "bleed": 1.0, "breaks": 1.0}[effect]
    font = _font("NotoSerifBengali-Regular")
    base = render_word("রাষ্ট্রপতি", font, np.random.default_rng(0), clean=True, hand=HandConfig(simulate=1.0))
    changed = render_word("রাষ্ট্রপতি", font, np.random.default_rng(0), clean=True,
                          hand=HandConfig(simulate=1.0, **{effect: value}))
    assert changed.tobytes() != base.tobytes()
    assert _ink(changed) > 0.3 * _ink(base)  # still a word, not a blank


def test_pens_thicken_bleed_spreads_and_breaks_remove_ink():
    from banglaocr.config import HandConfig

    font = _font("NotoSansBengali-Regular")

    def ink(**hand):
        return _ink(render_word("আগ্রহীদের", font, np.random.default_rng(1), clean=True,
                                hand=HandConfig(simulate=1.0, **hand)))

    plain = ink()
    assert ink(pen_range=[2.0, 2.0]) > 1.3 * plain
    assert ink(pen_range=[-0.6, -0.6]) < plain
    assert ink(bleed=1.0) > plain
    assert ink(breaks=1.0) < plain


def test_cluster_jitter_keeps_every_cluster_and_spaces_them_unevenly():
    from banglaocr.config import HandConfig

    font = _font("NotoSansBengali-Regular")
    plain = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(2), clean=True, hand=HandConfig(simulate=1.0))
    jittered = render_word("কর্মক্ষেত্রে", font, np.random.default_rng(2), clean=True,
                           hand=HandConfig(simulate=1.0, jitter=1.0))
    columns = (np.asarray(jittered.convert("L")) < 128).any(axis=0)
    gaps = np.diff(np.flatnonzero(np.diff(columns.astype(int)))) if columns.any() else []
    assert len(gaps) > 0  # the headline is broken between clusters: empty columns inside the word
    assert 0.7 * _ink(plain) < _ink(jittered) < 1.4 * _ink(plain)


def test_simulate_share_is_chosen_per_image_and_the_rest_keep_their_pixels(tmp_path):
    from banglaocr.config import HandConfig

    plain_dir, half_dir = tmp_path / "plain", tmp_path / "half"
    write_synthetic_dataset(plain_dir, n=60, seed=5, only_fonts=["Lohit-Bengali", "Mina-Regular"], workers=1)
    write_synthetic_dataset(half_dir, n=60, seed=5, only_fonts=["Lohit-Bengali", "Mina-Regular"], workers=1,
                            hand=HandConfig(**{**SIMULATED, "simulate": 0.5}))
    same = [(plain_dir / s / n.name).read_bytes() == n.read_bytes()
            for s in SPLITS for n in sorted((half_dir / s).glob("*.png"))]
    assert 0.25 < sum(same) / len(same) < 0.75  # about half in a simulated hand, the others as without one
    assert read_split(half_dir, "train") == read_split(plain_dir, "train")  # the same words and fonts


def test_simulated_hand_data_set_is_recorded_and_the_same_for_any_worker_count(tmp_path):
    from banglaocr.config import HandConfig
    from banglaocr.data.synth import recorded_settings, synth_settings

    hand = HandConfig(**SIMULATED)
    write_synthetic_dataset(tmp_path / "a", n=30, seed=1, hand=hand, workers=1)
    write_synthetic_dataset(tmp_path / "b", n=30, seed=1, hand=hand, workers=2)
    assert files_by_name(tmp_path / "a") == files_by_name(tmp_path / "b")
    info = json.loads((tmp_path / "a" / "synth.json").read_text(encoding="utf-8"))
    assert info["hand"] == {"slant": 0.0, "pen": 0, "wobble": 0.0, **SIMULATED}
    assert recorded_settings(info) == synth_settings(30, 1, hand=hand)
    assert recorded_settings(info) != synth_settings(30, 1, hand=HandConfig(**{**SIMULATED, "jitter": 0.5}))


@pytest.mark.parametrize(("hand", "message"), [
    ({"jitter": 0.5}, "simulate"),
    ({"simulate": 1.0, "pen_range": [2.0, -0.5]}, "pen_range"),
    ({"simulate": 1.0, "pen_range": [0.0]}, "pen_range"),
    ({"simulate": 1.0, "warp": 0.5}, "warp"),
    ({"simulate": 1.5}, "simulate"),
])
def test_bad_simulated_hand_keys_are_one_line_naming_the_key(hand, message):
    from banglaocr.config import recipe_from_dict

    with pytest.raises(UserError, match=rf"data\.synth\.hand\.{message}"):
        recipe_from_dict({"model": {"name_or_path": "tiny"}, "data": {"source": "synth", "synth": {"hand": hand}}})


# --------------------------------------------------------------------------- variable fonts


def test_variable_fonts_are_drawn_along_their_axes_and_recorded(tmp_path):
    from banglaocr.data.synth import font_axes

    variable = _font("NotoSansBengali-Variable")
    assert set(font_axes(variable)) == {"Weight", "Width"} and font_axes(_font("Lohit-Bengali")) == {}
    # Same size and margins, different weight/width: the ink differs between generators but not within one.
    inks = {_ink(render_word("বাংলা", variable, np.random.default_rng(seed), clean=True)) for seed in range(6)}
    assert len(inks) > 3
    again = render_word("বাংলা", variable, np.random.default_rng(2), clean=True)
    assert again.tobytes() == render_word("বাংলা", variable, np.random.default_rng(2), clean=True).tobytes()
    write_synthetic_dataset(tmp_path / "v", n=10, seed=0, only_fonts=["NotoSansBengali-Variable", "Mina-Bold"],
                            workers=1)
    info = json.loads((tmp_path / "v" / "synth.json").read_text(encoding="utf-8"))
    assert info["font_axes"] == {"NotoSansBengali-Variable": {"Weight": [100.0, 900.0], "Width": [62.0, 100.0]}}


def test_every_bundled_font_covers_the_word_list():
    """A font without a glyph draws its .notdef box where the label has a letter; ৎ counts as covered
    where the font draws its legacy spelling (ত + hasanta + ZWJ) instead."""
    from banglaocr.data.synth import missing_glyphs, spelled_for

    letters = "".join(sorted({c for word in bundled_words() for c in word}))
    for path in bundled_fonts():
        assert not missing_glyphs(path, spelled_for(letters, path)), font_name(path)


def test_fonts_without_khanda_ta_draw_its_legacy_spelling_and_keep_the_label(tmp_path):
    from banglaocr.data.synth import missing_glyphs, spelled_for

    likhan = _font("LikhanNormal")
    assert missing_glyphs(likhan, "হঠাৎ") == ["ৎ"] and not missing_glyphs(_font("Lohit-Bengali"), "হঠাৎ")
    assert normalize(spelled_for("হঠাৎ", likhan)) == "হঠাৎ"
    drawn = render_word("হঠাৎ", likhan, np.random.default_rng(0), clean=True)
    legacy = render_word("হঠাত\u09cd\u200d", likhan, np.random.default_rng(0), clean=True)
    assert drawn.tobytes() == legacy.tobytes()
