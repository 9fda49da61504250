"""Recipes: every error class is one line naming the key; overrides; round trip; shipped recipes."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from banglaocr.config import (
    RECIPES_DIR,
    Recipe,
    field_docs,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
    save_recipe,
)
from banglaocr.errors import UserError

BASE = {"model": {"name_or_path": "tiny", "init": "tiny"}, "data": {"source": "synth"}}


def build(overrides=(), raw=None):
    return recipe_from_dict(raw if raw is not None else BASE, list(overrides))


def error_of(overrides=(), raw=None) -> str:
    with pytest.raises(UserError) as info:
        build(overrides, raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_fill_every_section():
    recipe = build()
    assert isinstance(recipe, Recipe)
    assert recipe.lora.r == 16 and recipe.train.optimizer == "adamw"


@pytest.mark.parametrize(
    ("override", "key", "suggestion"),
    [
        ("train.learning_rate=1", "train.learning_rate", None),
        ("train.lrr=1", "train.lrr", "lr"),
        ("trian.lr=1", "trian", "train"),
        ("lora.rank=4", "lora.rank", None),
        ("data.image.heigth=64", "data.image.heigth", "height"),
    ],
)
def test_unknown_key_names_it_and_suggests(override, key, suggestion):
    message = error_of([override])
    assert f"unknown recipe key '{key}'" in message
    if suggestion:
        assert f"did you mean '{suggestion}'" in message


def test_wrong_type_names_key():
    assert "recipe key 'train.batch_size': expected int" in error_of(["train.batch_size=eight"])
    assert "recipe key 'train.lr': expected float" in error_of(["train.lr=fast"])
    assert "recipe key 'model.gradient_checkpointing': expected bool" in error_of(
        ["model.gradient_checkpointing=sometimes"])
    assert "recipe key 'train.max_steps'" in error_of(["train.max_steps=1.5"])


def test_missing_required_key():
    assert "missing required recipe key 'data.source'" in error_of(raw={"model": {"name_or_path": "x"}, "data": {}})
    assert "missing required recipe key 'model'" in error_of(raw={"data": {"source": "x"}})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=-0.1", "train.lr"),
        ("lora.r=0", "lora.r"),
        ("lora.r=-4", "lora.r"),
        ("train.keep_last=0", "train.keep_last"),
        ("data.image.height=50", "data.image.height"),
        ("loss.label_smoothing=1.5", "loss.label_smoothing"),
    ],
)
def test_invalid_value_names_key(override, key):
    assert f"recipe key '{key}'" in error_of([override])


def test_unknown_choice_suggests():
    message = error_of(["train.optimizer=adamw9bit"])
    assert "recipe key 'train.optimizer'" in message and "did you mean 'adamw8bit'" in message


def test_yaml_float_without_dot_is_accepted():
    # YAML 1.1 reads `1e-4` as a string; a float field takes it anyway.
    assert build(["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)


def test_lora_null_and_reenable():
    assert build(["lora=null"]).lora is None
    recipe = recipe_from_dict({**BASE, "lora": None}, ["lora.r=8"])
    assert recipe.lora.r == 8 and recipe.lora.alpha == 32


def test_override_needs_equals():
    assert "section.key=value" in error_of(["train.lr"])


def test_round_trip_through_yaml(tmp_path):
    recipe = build(["train.lr=3e-4", "data.classes=[word]", "data.samples_per_class=100"])
    path = save_recipe(recipe, tmp_path / "recipe.yaml")
    again = recipe_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert again == recipe
    assert recipe_to_dict(again)["data"]["classes"] == ["word"]


def test_samples_per_class_accepts_all_or_int():
    assert build(["data.samples_per_class=all"]).data.samples_per_class == "all"
    assert build(["data.samples_per_class=5"]).data.samples_per_class == 5
    assert "data.samples_per_class" in error_of(["data.samples_per_class=some"])


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid(path):
    recipe = load_recipe(path)
    assert recipe.train.max_steps > 0


def test_recipe_by_name_and_unknown_name():
    demo = load_recipe("cpu_demo")
    assert (demo.model.name_or_path, demo.model.init) == ("tiny", "pretrained")
    with pytest.raises(UserError, match="recipe not found"):
        load_recipe("no_such_recipe")


def test_invalid_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(bad)


def test_every_field_has_a_docstring():
    sections = [Recipe]
    seen = set()
    while sections:
        cls = sections.pop()
        if cls in seen:
            continue
        seen.add(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            for candidate in (f.type if not isinstance(f.type, str) else None,):
                if dataclasses.is_dataclass(candidate):
                    sections.append(candidate)
        for hint in __import__("typing").get_type_hints(cls).values():
            for arg in (hint, *getattr(hint, "__args__", ())):
                if dataclasses.is_dataclass(arg):
                    sections.append(arg)


@pytest.mark.parametrize("key, value", [("slant", 1.5), ("pen", -1), ("wobble", 9)])
def test_hand_values_out_of_range_are_named(key, value):
    with pytest.raises(UserError, match=f"data.synth.hand.{key}"):
        load_recipe("cpu_demo", [f"data.synth.hand.{key}={value}"])


# --------------------------------------------------------------------------- what YAML lets pass


def recipe_file(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("model: {name_or_path: x}\ndata: {source: synth}\ntrain:\n  lr: 0.1\n  max_steps: 5\n  lr: 0.2\n",
     "key 'train.lr' is given twice (lines 4 and 6)"),
    ("model: {name_or_path: x}\ndata: {source: synth}\nmodel: {name_or_path: y}\n",
     "key 'model' is given twice (lines 1 and 3)"),
    ("model: {name_or_path: x}\ndata: {source: synth, curriculum: [{max_chars: 3, max_chars: 4}]}\n",
     "key 'data.curriculum[0].max_chars' is given twice (lines 2 and 2)"),
])
def test_duplicate_yaml_key_is_an_error_naming_key_and_lines(tmp_path, text, message):
    with pytest.raises(UserError) as info:
        load_recipe(recipe_file(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_yaml_merge_key_is_not_a_duplicate(tmp_path):
    text = ("model: &m {name_or_path: x, init: tiny}\ndata: {source: synth}\n"
            "eval:\n  <<: {batch_size: 4, num_beams: 2}\n  batch_size: 8\n")
    recipe = load_recipe(recipe_file(tmp_path, text))
    assert (recipe.eval.batch_size, recipe.eval.num_beams) == (8, 2)  # the explicit key wins, as YAML says


def test_self_containing_alias_and_non_utf8_recipe_are_one_line(tmp_path):
    with pytest.raises(UserError, match="alias at line 1 contains itself"):
        load_recipe(recipe_file(tmp_path, "model: &a [*a]\n"))
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: {name_or_path: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_recipe(path)


@pytest.mark.parametrize(("override", "key"), [
    ("train.max_steps=1000000000", "train.max_steps"),
    ("train.batch_size=100000", "train.batch_size"),
    ("train.lr=50", "train.lr"),
    ("train.seed=-1", "train.seed"),
    ("data.synth.seed=4294967296", "data.synth.seed"),
    ("eval.max_new_tokens=1000000", "eval.max_new_tokens"),
    ("data.image.height=100000", "data.image.height"),
])
def test_implausible_values_are_errors(override, key):
    message = error_of([override])
    assert f"recipe key '{key}'" in message and "implausible" in message


@pytest.mark.parametrize(("override", "key"), [("train.lr=.inf", "train.lr"),
                                                ("augment.blur_sigma=.inf", "augment.blur_sigma"),
                                                ("train.max_grad_norm=.inf", "train.max_grad_norm"),
                                                ("loss.focal_gamma=.nan", "loss.focal_gamma")])
def test_non_finite_floats_are_errors(override, key):
    # NaN fails most sections' own range checks first; whichever check speaks, it names the key.
    message = error_of([override])
    assert f"recipe key '{key}'" in message
    if override.endswith("inf"):
        assert "must be a finite number, got inf" in message


def test_plausible_limits_are_inclusive_and_name_real_keys():
    assert build(["train.max_steps=100000000", "train.seed=4294967295"]).train.max_steps == 10**8
    from banglaocr.config import PLAUSIBLE

    flat = set()

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            hint = __import__("typing").get_type_hints(cls)[f.name]
            sections = [a for a in (hint, *getattr(hint, "__args__", ())) if dataclasses.is_dataclass(a)]
            for section in sections:
                walk(section, f"{prefix}{f.name}.")
            flat.add(f"{prefix}{f.name}")

    walk(Recipe, "")
    assert sorted(set(PLAUSIBLE) - flat) == []  # a renamed key must not silently lose its limit
