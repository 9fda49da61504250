"""`banglaocr synth` through the real command registry."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from banglaocr.cli import app

runner = CliRunner()


def test_help_has_summary_and_example():
    result = runner.invoke(app, ["synth", "--help"])
    assert result.exit_code == 0
    assert "Render synthetic Bangla word images" in result.output
    assert "banglaocr synth --out" in result.output
    for option in ("--out", "--n", "--seed", "--fonts", "--words", "--holdout-font", "--overwrite", "--simulate",
                   "--jitter", "--pen-range", "--pressure", "--bleed", "--breaks", "--warp"):
        assert option in result.output


def test_writes_a_data_set_and_prints_a_summary(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", "--out", str(out), "--n", "20", "--seed", "1",
                                 "--holdout-font", "Lohit-Bengali"])
    assert result.exit_code == 0, result.output
    assert "held out" in result.output and "20 images" in result.output
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["splits"] == {"train": 16, "val": 2, "test": 2}
    assert info["fonts"]["Lohit-Bengali"]["train"] == 0
    assert len(list(out.rglob("*.png"))) == 20


def test_unknown_font_is_one_line_and_exit_code_2(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "o"), "--n", "5", "--holdout-font", "Nope"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "Nope" in result.output and "Lohit-Bengali" in result.output
    assert "Traceback" not in result.output


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "o"
    assert runner.invoke(app, ["synth", "--out", str(out), "--n", "5"]).exit_code == 0
    again = runner.invoke(app, ["synth", "--out", str(out), "--n", "5"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, ["synth", "--out", str(out), "--n", "5", "--overwrite"]).exit_code == 0


def test_missing_fonts_folder_is_a_user_error(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "o"), "--fonts", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no such folder" in result.output and "Traceback" not in result.output


def test_font_and_clean_options(tmp_path):
    out = tmp_path / "clean"
    result = runner.invoke(app, ["synth", "--out", str(out), "--n", "10", "--font", "Galada-Regular",
                                 "--font", "Mina-Bold", "--clean", "--slant", "-0.3", "--pen", "1", "--wobble", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["clean"] is True and sorted(info["fonts"]) == ["Galada-Regular", "Mina-Bold"]
    assert {key: info["hand"][key] for key in ("slant", "pen", "wobble")} == {"slant": -0.3, "pen": 1, "wobble": 2.0}


def test_simulated_hand_options_are_recorded(tmp_path):
    out = tmp_path / "hand"
    result = runner.invoke(app, ["synth", "--out", str(out), "--n", "10", "--simulate", "0.8", "--jitter", "0.6",
                                 "--pen-range", "-0.5", "2", "--pressure", "0.5", "--bleed", "0.3",
                                 "--breaks", "0.3", "--warp", "0.06"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["hand"] == {"slant": 0.0, "pen": 0, "wobble": 0.0, "simulate": 0.8, "jitter": 0.6,
                            "pen_range": [-0.5, 2.0], "pressure": 0.5, "bleed": 0.3, "breaks": 0.3, "warp": 0.06}


def test_a_simulated_hand_option_without_simulate_is_one_line_and_exit_code_2(tmp_path):
    for options, named in ((["--jitter", "0.5"], "--simulate"),
                           (["--simulate", "1", "--pen-range", "2", "-0.5"], "--pen-range")):
        result = runner.invoke(app, ["synth", "--out", str(tmp_path / "o"), "--n", "5", *options])
        assert result.exit_code == 2 and result.output.strip().count("\n") == 0, result.output
        assert named in result.output and "Traceback" not in result.output
        assert not (tmp_path / "o").exists()


def test_unknown_font_choice_is_one_line_and_exit_code_2(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "o"), "--n", "5", "--font", "Nope"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "font 'Nope' is not among the fonts" in result.output and "Galada-Regular" in result.output
