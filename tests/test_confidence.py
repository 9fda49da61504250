"""Confidence of a reading: against transformers' own transition scores, clusters on the real Qwen
tokenizer, AUROC against a brute-force pair count, and what predict and eval show of it."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.cli.predict_output import FORMATS, format_row, parse_row
from banglaocr.confidence import Confidence, auroc, cluster_tokens, coverage_table, token_spans
from banglaocr.text import graphemes, normalize

WORDS = ["কলম", "খাতা", "ক্ষমা", "স্কুল", "বাড়ি", "কৌতূহল"]


@pytest.fixture(scope="module")
def tiny():
    from banglaocr.infer import load_for_inference

    return load_for_inference("tiny", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def word_images():
    from banglaocr.data.synth import bundled_fonts, render_word

    fonts = bundled_fonts()
    return [render_word(word, fonts[i % len(fonts)], np.random.default_rng(i)) for i, word in enumerate(WORDS)]


def brute_force_auroc(confidences, correct):
    pairs = [(a, b) for a, ok_a in zip(confidences, correct) if ok_a for b, ok_b in zip(confidences, correct) if not ok_b]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_pair_count(seed):
    rng = random.Random(seed)
    confidences = [round(rng.random(), 1) for _ in range(60)]  # rounded: many ties
    correct = [rng.random() < c for c in confidences]
    assert auroc(confidences, correct) == pytest.approx(brute_force_auroc(confidences, correct))


def test_auroc_is_undefined_without_both_kinds():
    assert auroc([0.1, 0.9], [True, True]) is None and auroc([0.1], [False]) is None and auroc([], []) is None


def test_coverage_table_keeps_the_most_confident():
    rows = coverage_table([0.1, 0.9, 0.5, 0.8], ["x", "কলম", "খা", "আমি"], ["খাতা", "কলম", "খাতা", "আমি"],
                          coverages=(1.0, 0.5))
    assert rows[1]["n"] == 2 and rows[1]["exact_match"] == 1.0 and rows[1]["cer"] == 0.0
    assert rows[1]["min_confidence"] == 0.8 and rows[0]["n"] == 4 and rows[0]["exact_match"] == 0.5


def test_greedy_confidence_equals_transformers_transition_scores(tiny, word_images):
    """The probe's log-probabilities are those `compute_transition_scores` gives from generate's own scores."""
    from banglaocr.data.collate import Collator, finish_batch_on_device
    from banglaocr.data.pixels import resize_for_model
    from banglaocr.infer import generate_readings
    from banglaocr.model.tokenizers import special_token_ids

    loaded, settings = tiny
    texts, confidences = generate_readings(loaded.model, loaded.tokenizer, word_images, settings, batch_size=len(WORDS))
    ids = special_token_ids(loaded.tokenizer)
    shown = [resize_for_model(image, settings.image) for image in word_images]
    inputs = finish_batch_on_device(Collator(loaded.tokenizer, settings.prompt, train=False)(
        [{"image": image} for image in shown]), "cpu")
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                    eos_token_id=ids["im_end"], pad_token_id=ids["pad"],
                                    return_dict_in_generate=True, output_scores=True)
    reference = loaded.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    generated = out.sequences[:, inputs["input_ids"].shape[1]:]
    for row, text, confidence, scores in zip(generated.tolist(), texts, confidences, reference):
        kept = row.index(ids["im_end"]) + 1 if ids["im_end"] in row else len(row)
        assert confidence.sequence == pytest.approx(math.exp(scores[:kept].sum().item()), rel=1e-4)
        assert confidence.lowest == pytest.approx(math.exp(scores[:kept].min().item()), rel=1e-4)
        assert "".join(cluster for cluster, _ in confidence.clusters) == text.replace(" ", "")
        assert all(0.0 < p <= 1.0 for _, p in confidence.clusters)


def test_beam_confidence_is_a_probability_of_the_reading(tiny, word_images):
    from banglaocr.infer import generate_readings

    loaded, settings = tiny
    greedy = generate_readings(loaded.model, loaded.tokenizer, word_images, settings)
    beams = generate_readings(loaded.model, loaded.tokenizer, word_images, settings, num_beams=3)
    for text, confidence, beam_text, beam_confidence in zip(*greedy, *beams):
        assert 0.0 < beam_confidence.sequence <= 1.0 and beam_confidence.lowest >= beam_confidence.sequence
        if beam_text == text:  # the same tokens: the same probability
            assert beam_confidence.sequence == pytest.approx(confidence.sequence, rel=1e-3)


@pytest.mark.parametrize("word", WORDS + ["আমি ভাত খাই", "উত্\u200dস"])
def test_clusters_on_the_real_qwen_tokenizer_cover_every_token(word, qwen_tokenizer):
    tokens = qwen_tokenizer(word, add_special_tokens=False)["input_ids"]
    raw, spans = token_spans(qwen_tokenizer, tokens)
    assert raw == word and len(spans) == len(word)
    clusters = cluster_tokens(raw, spans)
    assert [c for c, _ in clusters] == [g for g in graphemes(normalize(word)) if g != " "]
    covered = sorted({i for _, indices in clusters for i in indices})
    assert covered == list(range(len(tokens)))  # every token's probability counts in some cluster
    assert all(indices for _, indices in clusters)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_with_confidence_read_back_for_resume(fmt):
    confidence = Confidence(0.4213, 0.5, (("ক", 0.9), ("লম", 0.5)))
    line = format_row("a\tb.png", "কলম", None, fmt, confidence=confidence, flagged=True)
    assert parse_row(line.rstrip("\n"), fmt) == "a\tb.png"
    if fmt == "jsonl":
        row = json.loads(line)
        assert row["confidence"] == 0.4213 and row["flagged"] is True and row["clusters"] == [["ক", 0.9], ["লম", 0.5]]


def test_predict_shows_confidence_and_flags(tmp_path):
    from banglaocr.data.synth import bundled_fonts, render_word

    paths = []
    for i, word in enumerate(WORDS):
        paths.append(tmp_path / f"w{i}.png")
        render_word(word, bundled_fonts()[0], np.random.default_rng(i)).save(paths[-1])
    result = CliRunner().invoke(app, ["predict", "--model", "tiny", "--format", "jsonl", "--flag-below", "0.999",
                                      *map(str, paths)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(0.0 <= row["confidence"] <= 1.0 and row["lowest_token_confidence"] >= row["confidence"] - 1e-4
               for row in rows)
    flagged = [row.get("flagged", False) for row in rows]
    assert flagged == [row["confidence"] < 0.999 for row in rows] and any(flagged)
    assert f"{sum(flagged)} reading(s) flagged" in result.stderr
    bad = CliRunner().invoke(app, ["predict", "--model", "tiny", "--flag-below", "1.5", str(paths[0])])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_eval_reports_auroc_coverage_and_writes_the_reliability_plot(tmp_path):
    from PIL import Image

    from banglaocr.data.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=40, seed=3)
    result = CliRunner().invoke(app, ["eval", "--model", "tiny", "--dataset", str(tmp_path / "data"), "--split", "all",
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.stdout and "the most confident readings" in result.stdout
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    report = summary["confidence"]
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    correct = [normalize(r["prediction"]) == normalize(r["reference"]) for r in rows]
    assert report["auroc"] == pytest.approx(brute_force_auroc([r["confidence"] for r in rows], correct))
    assert [row["coverage"] for row in report["coverage"]] == [1.0, 0.9, 0.8, 0.5]
    assert report["coverage"][0]["cer"] == pytest.approx(summary["cer"])
    with Image.open(tmp_path / "eval" / "reliability.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
