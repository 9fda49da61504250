"""Write benchmarks/words/held_out_words.txt: Bangla words that are NOT in the bundled word list.

    python scripts/held_out_words.py [--dic /usr/share/hunspell/bn_BD.dic] [--n 400] [--seed 0]

The words come from Debian's Bengali hunspell dictionary (package hunspell-bn, GPL-2; see
benchmarks/words/SOURCES.md). Kept: words of 2 to 12 characters, normalised, made only of letters
that the bundled word list uses (so a reader trained on it could spell them), that every held-out
benchmark font can draw, and that are not in the bundled list. A seeded sample of `--n` of them,
in sampled order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is not a package; run from a checkout

from banglaocr.data.synth import bundled_words, missing_glyphs  # noqa: E402
from banglaocr.text import normalize  # noqa: E402
from benchmarks.accuracy import FAMILIES, FONTS_DIR, WORDS_FILE  # noqa: E402

LENGTH = (2, 12)


def main(dic: Path, n: int, seed: int, out: Path = WORDS_FILE) -> None:
    known = set(bundled_words())
    letters = {c for word in known for c in word}
    fonts = [FONTS_DIR / family.font for family in FAMILIES]
    drawable = {c for c in letters if not any(missing_glyphs(font, c) for font in fonts)}
    entries = dic.read_text(encoding="utf-8").splitlines()[1:]  # the first line is the entry count
    candidates = []
    for entry in entries:
        word = normalize(entry.split("/", 1)[0])
        if LENGTH[0] <= len(word) <= LENGTH[1] and word not in known and set(word) <= drawable:
            candidates.append(word)
    candidates = list(dict.fromkeys(candidates))
    chosen = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))[:n]]
    out.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    print(f"{len(candidates)} candidate words; wrote {len(chosen)} to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dic", type=Path, default=Path("/usr/share/hunspell/bn_BD.dic"))
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.dic, args.n, args.seed)
