"""Small data sets in the layouts users bring, built by code: a folder of JPGs with `labels.csv`
(`filename,label`), GraDeT-HTR's `images/` + `labels/label.csv` (`image_id,text`), BN-HTRd's document
folders (`N/N.xlsx`, written with openpyxl, and `N/Words/<page>/<Id>.jpg`) and BanglaWriting's pages
with the JSON LabelMe writes beside each. Word images are rendered small and clean with the bundled
fonts (milliseconds each). Each builder returns what a loader must find: the usable samples and the
rows it must skip, by reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from banglaocr.data.synth import bundled_fonts, render_word

WORDS = ["বাংলা", "ভাষা", "কলম", "খাতা", "আকাশ", "নদী", "পাখি", "ফুল", "মাটি", "জল", "গাছ", "ঘর", "বই", "মা",
         "দেশ", "গান", "চাঁদ", "রাত", "দিন", "হাত"]


@dataclass
class Built:
    """A data set on disk and what loading it must give."""

    root: Path
    samples: dict[str, str] = field(default_factory=dict)
    """Sample id -> its normalised word."""
    skips: Counter = field(default_factory=Counter)
    """Skip reason -> how many rows the loader must count."""
    writers: dict[str, str] = field(default_factory=dict)
    """Sample id -> its writer."""


def word_image(word: str, seed: int) -> Image.Image:
    """A clean render of `word` (height about 40-60 pixels)."""
    fonts = bundled_fonts()
    return render_word(word, fonts[seed % len(fonts)], np.random.default_rng(seed), clean=True)


def word_of(index: int) -> str:
    return WORDS[index % len(WORDS)]


def labels_csv_folder(root: Path, n: int = 24) -> Built:
    """A folder of JPGs and a `labels.csv` with the columns `filename,label`."""
    root.mkdir(parents=True)
    built = Built(root)
    lines = ["filename,label"]
    for index in range(n):
        name = f"scan_{index:03d}.jpg"
        word_image(word_of(index), index).save(root / name, quality=90)
        lines.append(f"{name},{word_of(index)}")
        built.samples[name] = word_of(index)
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return built


def gradet_folder(root: Path, n: int = 24) -> Built:
    """GraDeT-HTR's sample layout: `images/*.jpg` and `labels/label.csv` (`image_id,text`); some ids carry
    the extension and some do not, labels have stray spaces, and two rows name images the folder lacks
    (as its published sample does)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    built = Built(root)
    lines = ["image_id,text"]
    for index in range(n):
        stem = f"1_{index // 5 + 1}_{index % 5 + 1}_1"
        word_image(word_of(index), 100 + index).save(root / "images" / f"{stem}.jpg", quality=90)
        image_id = f"{stem}.jpg" if index % 2 else stem
        lines.append(f"{image_id}, {word_of(index)} ")
        built.samples[image_id] = word_of(index)
    lines += ["9_9_9_1.jpg,কথা", "9_9_9_2,প্রকাশ"]
    built.skips["missing image file"] = 2
    (root / "labels" / "label.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return built


def bn_htrd_folder(root: Path, documents: int = 6, pages: int = 2, words: int = 3) -> Built:
    """BN-HTRd as unpacked: document folders `1/`..`N/`, each `N/N.xlsx` (`Id`/`Word`; document 2 spells
    them `ID`/`word`) and crops `N/Words/N_P/N_P_L_W.jpg`. Document 1 also holds a row without a crop,
    an empty word, a word in Latin letters and a crop without a row."""
    import openpyxl

    built = Built(root)
    index = 0
    for document in range(1, documents + 1):
        folder = root / str(document)
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        sheet.append(["ID", "word"] if document == 2 else ["Id", "Word"])
        for page in range(1, pages + 1):
            crops = folder / "Words" / f"{document}_{page}"
            crops.mkdir(parents=True)
            for word in range(1, words + 1):
                sample = f"{document}_{page}_1_{word}"
                word_image(word_of(index), 200 + index).save(crops / f"{sample}.jpg", quality=90)
                sheet.append([sample, word_of(index)])
                name = f"{document}/Words/{document}_{page}/{sample}.jpg"
                built.samples[name], built.writers[name] = word_of(index), str(document)
                index += 1
        if document == 1:
            sheet.append(["1_9_1_1", "নেই"])  # no crop for it
            for sample, word in (("1_1_2_1", ""), ("1_1_2_2", "hello")):
                word_image("কলম", 7).save(folder / "Words" / "1_1" / f"{sample}.jpg")
                sheet.append([sample, word])
            word_image("কলম", 8).save(folder / "Words" / "1_2" / "1_2_5_5.jpg")  # no row for it
            built.skips.update({"missing crop": 1, "empty word": 1, "Latin letters in the word": 1,
                                "crop without a row in 1.xlsx": 1})
        workbook.save(folder / f"{document}.xlsx")
    return built


def labelme_page(json_path: Path, page: Image.Image, shapes: list[tuple[str, list[list[float]]]]) -> None:
    """The JSON LabelMe (4.x/5.x) writes for `page` beside it: rectangles as two corners."""
    payload = {
        "version": "4.5.6",
        "flags": {},
        "shapes": [{"label": label, "points": points, "group_id": None, "shape_type": "rectangle", "flags": {}}
                   for label, points in shapes],
        "imagePath": json_path.with_suffix(".jpg").name,
        "imageData": None,
        "imageHeight": page.height,
        "imageWidth": page.width,
    }
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")


def banglawriting_folder(root: Path, writers: int = 6, words: int = 4) -> Built:
    """BanglaWriting's `converted` folder: one page per writer, `WRITER_AGE_GENDER.jpg`, with LabelMe's JSON
    beside it; words pasted on the page at their boxes (corners given in either order). The first page
    also holds a box outside the page, a box of zero width, an empty label and one in Latin letters."""
    root.mkdir(parents=True)
    built = Built(root)
    index = 0
    for writer in range(1, writers + 1):
        page = Image.new("RGB", (420, 60 + 70 * words), "white")
        shapes = []
        name = f"{writer * 7}_{18 + writer}_{writer % 2}.jpg"
        for slot in range(words):
            word = word_image(word_of(index), 300 + index)
            x, y = 20 + 10 * slot, 30 + 70 * slot
            page.paste(word, (x, y))
            corners = [[x, y], [x + word.width, y + word.height]]
            shapes.append((word_of(index), corners if slot % 2 else corners[::-1]))
            built.samples[f"{name}#{slot}"] = word_of(index)
            built.writers[f"{name}#{slot}"] = str(writer * 7)
            index += 1
        if writer == 1:
            shapes += [("বাইরে", [[500, 10], [600, 40]]), ("সরু", [[40, 40], [40, 80]]),
                       ("", [[10, 10], [50, 30]]), ("ok", [[10, 10], [50, 30]])]
            built.skips.update({"box outside the page": 1, "degenerate box (under 2 pixels)": 1, "empty word": 1,
                                "Latin letters in the word": 1})
        page.save(root / name, quality=92)
        labelme_page((root / name).with_suffix(".json"), page, shapes)
    return built
