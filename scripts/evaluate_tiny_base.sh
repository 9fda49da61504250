#!/usr/bin/env bash
# Score a tiny base on CLEAN renders of words it never trained on, with `banglaocr eval`:
#   1. the held-out handwriting-style font (Galada-Regular), 500 words;
#   2. the 20 training fonts, 1000 words.
# The words are the test split of tiny_base_v3.yaml's synthetic data, so its last run trained on none.
#
#   bash scripts/evaluate_tiny_base.sh [MODEL] [WORK_DIR]     (defaults: tiny, eval-tiny-base)
set -euo pipefail
model="${1:-tiny}"
work="${2:-eval-tiny-base}"
mkdir -p "$work"

training_fonts=()
for font in AnekBangla-Bold AnekBangla-ExtraLight Atma-Bold Atma-Light Atma-Medium BalooDa2-ExtraBold \
            BalooDa2-Regular HindSiliguri-Light HindSiliguri-SemiBold Lohit-Bengali Mina-Bold Mina-Regular \
            NotoSansBengali-Black NotoSansBengali-Bold NotoSansBengali-Regular NotoSerifBengali-Bold \
            NotoSerifBengali-ExtraLight NotoSerifBengali-Regular TiroBangla-Italic TiroBangla-Regular; do
  training_fonts+=(--font "$font")
done

# The words of the shipped base's last training run's test split (recipes/tiny_base_v3.yaml: every bundled
# font, Galada-Regular held out): its data plan, read from the recipe and computed without rendering it.
python - "$work/test-words.txt" <<'PY'
import sys
from pathlib import Path
from banglaocr.config import load_recipe
from banglaocr.data import synth
plan = load_recipe("tiny_base_v3").data.synth
_, rows, _ = synth._plan_jobs(Path("unused"), plan.n, plan.seed, synth.bundled_words(), synth.bundled_fonts(),
                              plan.holdout_font, synth._split_sizes(plan.n, (0.8, 0.1, 0.1)), plan.short_fraction, False, None)
Path(sys.argv[1]).write_text("\n".join(dict.fromkeys(row["text"] for row in rows["test"])) + "\n", encoding="utf-8")
PY
banglaocr synth --out "$work/heldout-clean" --n 500 --seed 2 --font Galada-Regular --clean \
  --words "$work/test-words.txt" --overwrite > /dev/null
banglaocr synth --out "$work/training-fonts-clean" --n 1000 --seed 2 "${training_fonts[@]}" --clean \
  --words "$work/test-words.txt" --overwrite > /dev/null

for set in heldout-clean training-fonts-clean; do
  echo "== $set"
  banglaocr eval --model "$model" --dataset "$work/$set" --split all --out "$work/eval-$set"
done
