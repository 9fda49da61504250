"""Write examples/words/: clean renders of ten common Bangla words, the first images to read.

    python scripts/render_examples.py
    banglaocr predict --model tiny examples/words/*.png

The file name is the word's number in COMMON_WORDS; labels.tsv holds "file<TAB>word".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from banglaocr.data.synth import bundled_fonts, font_name, render_word
from banglaocr.text import normalize

# "I, you, Bangla, language, man, country, water, home, good, word"
COMMON_WORDS = ["আমি", "তুমি", "বাংলা", "ভাষা", "মানুষ", "দেশ", "জল", "বাড়ি", "ভালো", "কথা"]
FONT = "NotoSansBengali-Regular"
OUT_DIR = Path(__file__).resolve().parent.parent / "examples" / "words"


def main(out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    font = next(path for path in bundled_fonts() if font_name(path) == FONT)
    labels = []
    for index, word in enumerate(COMMON_WORDS, start=1):
        name = f"word{index:02d}.png"
        render_word(normalize(word), font, np.random.default_rng(index), clean=True).save(out_dir / name)
        labels.append(f"{name}\t{normalize(word)}")
    (out_dir / "labels.tsv").write_text("\n".join(labels) + "\n", encoding="utf-8")
    print(f"wrote {len(labels)} images to {out_dir}")


if __name__ == "__main__":
    main()
