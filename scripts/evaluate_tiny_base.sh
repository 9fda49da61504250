#!/usr/bin/env bash
# Score a tiny base on CLEAN renders of words it never trained on, with `banglaocr eval`:
#   1. the held-out handwriting-style font (Galada-Regular), 500 words;
#   2. the 20 training fonts, 1000 words.
# The words are the test split of tiny_base.yaml's synthetic data (seed 1), so no word was trained on.
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

# The base's own data plan (the same seed and the 21 fonts of tiny_base.yaml render the same words in the
# same splits; more fonts are bundled now).
plan="$work/tiny-base-synth"
if [ ! -f "$plan/synth.json" ]; then
  banglaocr synth --out "$plan" --n 30000 --seed 1 --holdout-font Galada-Regular "${training_fonts[@]}" \
    --font Galada-Regular > /dev/null
fi
python -c "import json, sys; [print(json.loads(line)['text']) for line in open(sys.argv[1], encoding='utf-8')]" \
  "$plan/test/metadata.jsonl" > "$work/test-words.txt"

banglaocr synth --out "$work/heldout-clean" --n 500 --seed 2 --font Galada-Regular --clean \
  --words "$work/test-words.txt" --overwrite > /dev/null
banglaocr synth --out "$work/training-fonts-clean" --n 1000 --seed 2 "${training_fonts[@]}" --clean \
  --words "$work/test-words.txt" --overwrite > /dev/null

for set in heldout-clean training-fonts-clean; do
  echo "== $set"
  banglaocr eval --model "$model" --dataset "$work/$set" --split all --out "$work/eval-$set"
done
