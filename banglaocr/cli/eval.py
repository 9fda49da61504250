"""`banglaocr eval`: CER / WER / grapheme error rate of a model on a labelled split, by real generation.

Data: `--dataset D` loads D like `data.source` does with the default split settings
(`val_fraction` 0.05, `test_fraction` 0.05, `split_seed` 42): a source that has only a train
split still gets a seeded test split - the same 5% a training run with default data settings
held out and never trained on. `--split all` evaluates every sample of the source. `--recipe R`
uses R's data section instead (class filter, split settings; `source: synth` is rendered on
first use, and a run's own recipe.yaml finds the images rendered beside it). `section.key=value`
arguments override keys of the data and eval sections as `train`'s do (`data.text_column=label`,
`data.split_by=writer`, `eval.batch_size=8`; `cli.overrides`); `data.image.*`, `data.prompt` and
`eval.max_new_tokens` also change how the model reads, on top of its own settings.

Output: `predictions.jsonl` (`id` - the file name for image folders -, `reference`,
`prediction`, `cer`, `confidence` per sample), `summary.json` and `reliability.png` in `--out`.
How well the model's confidence ranks its errors is reported too (`banglaocr.confidence`): the AUROC
of confidence against exact match, a coverage table (the CER of the 100/90/80/50% most confident
readings) and the reliability plot (confidence bins against exact match). The default is `eval-<split>`
inside the training output folder or model folder given as `--model` (the `--adapter` folder
when one is given) - results stay next to what they measure; for a hub id or a folder we may
not write to, `eval-<split>` in the current folder. Both files are written whole and renamed into
place; under the output policy (`banglaocr.output_policy`) a folder that holds other files and no eval
summary is refused, untouched, unless `--overwrite` (which writes the two files and touches nothing
else there), and a result file that is a FIFO or a folder is refused either way. Images that cannot
be decoded are skipped, counted in the summary and named there (a few examples), never dropped silently.

Image geometry (`reading_settings`; the summary's `geometry` and the report's first line say which):
a model banglaocr trained is read as training showed it images (its `banglaocr.json`); a model
without one (a base from the hub) by its OWN preprocessing - Qwen's smart_resize with the pixel
limits of its preprocessor_config.json - so its zero-shot score is the one it has, not one at a
budget it never saw; unless the user sets a budget: `--recipe` (the recipe's `data.image`, prompt
and `eval.max_new_tokens`, as training's `eval.before_training` reads the base) or `--image KEY=VALUE`
(any model, on top of the rest). Samples whose logits turned non-finite (an fp16 overflow) are scored
as empty predictions, counted in `nonfinite_logits` and said in one line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import (AdapterOption, DeviceOption, JsonOption, ModelOption, OverwriteOption,
                                  PrecisionOption, RecipeOption, check_writable, console, err_console,
                                  launched_processes, leave_launched_processes, load_quietly, progress_bar,
                                  user_errors)
from banglaocr.cli.conventions import one_of
from banglaocr.confidence import confidence_report
from banglaocr.files import expand_home
from banglaocr.output_policy import claim_folder, path_kind, write_error_line
from banglaocr.row_encoding import escape_field, json_line

SPLIT_CHOICES = ("train", "val", "test", "all")
RESULT_FILES = ("predictions.jsonl", "summary.json", "reliability.png")
"""What eval writes into --out (and all it touches there)."""
ImageOption = Annotated[
    list[str] | None,
    typer.Option("--image", metavar="KEY=VALUE",
                 help="Read at this image budget (repeat: --image height=64 --image max_width=512; keys of "
                      "a recipe's data.image), whatever the model's own settings."),
]
OverridesArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="KEY=VALUE...", help="Recipe overrides of the data and eval sections, as train takes "
                                                "them: data.text_column=label data.split_by=writer eval.batch_size=8."),
]
WORST = 10  # worst samples shown after the summary table


def default_out_dir(model: str, adapter: str | None, split: str) -> Path:
    """`eval-<split>` inside the folder that was evaluated if we may write there, else in the cwd.

    >>> default_out_dir("Qwen/Qwen3-VL-2B-Instruct", None, "test"), default_out_dir("tiny", None, "all")
    (PosixPath('eval-test'), PosixPath('eval-all'))
    """
    from banglaocr.model.shipped import SHIPPED_MODELS

    name = f"eval-{split}"
    evaluated = adapter if adapter is not None else model
    if evaluated in SHIPPED_MODELS:  # never into the installed package
        return Path(name)
    folder = Path(evaluated).expanduser()
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder / name
    return Path(name)


def _data_config(dataset: str | None, recipe: Path | None, classes: list[str] | None = None,
                 overrides: list[str] | None = None):
    """The data section to evaluate on and the eval section (--recipe's, or the defaults), with the `data.*`
    and `eval.*` overrides on top."""
    from banglaocr.cli.overrides import EVAL_SECTIONS, check_overrides, reading_recipe
    from banglaocr.errors import UserError

    if (dataset is None) == (recipe is None):
        raise UserError("give exactly one of --dataset or --recipe")
    overrides = overrides or []
    check_overrides(overrides, EVAL_SECTIONS, "eval")
    if dataset is not None:
        # The same class filter as the training recipe gives the same seeded test split it held out.
        loaded = reading_recipe({"source": dataset, "classes": classes or None}, overrides)
        return loaded.data, loaded.eval
    if classes:
        raise UserError("--classes goes with --dataset (a recipe names its own data.classes)")
    from banglaocr.config import load_recipe, resolve_recipe_path
    from banglaocr.data.sources import resolve_source, synth_dir

    loaded = load_recipe(recipe, overrides)
    # A run folder's recipe.yaml: its synthetic images were rendered beside it (train -o may
    # differ from the train.output_dir the recipe names).
    beside = resolve_recipe_path(recipe).parent
    work_dir = beside if (synth_dir(loaded.data, beside) / "synth.json").is_file() else Path(loaded.train.output_dir)
    return resolve_source(loaded.data, work_dir), loaded.eval


def reading_settings(settings, data_cfg, eval_cfg, recipe: Path | None, image: list[str] | None,
                     overrides: list[str] | None = None):
    """The `ReadSettings` to evaluate with: the model's own (`infer.read_settings`), the recipe's budget for
    a model without banglaocr.json when `--recipe` is given, and `--image` and the reading overrides
    (`data.image.*`, `data.prompt`, `eval.max_new_tokens`: `overrides.with_reading_overrides`) on top.

    >>> from banglaocr.config import DataConfig
    >>> from banglaocr.infer import read_settings
    >>> reading_settings(read_settings("tiny"), DataConfig(source="-"), None, None,
    ...                  ["height=64"]).describe_geometry()  # doctest: +ELLIPSIS
    'budget: height 64, width 32-384, stretch 2, tight crop (banglaocr.json in ... with --image height=64)'
    """
    import dataclasses

    from banglaocr.config import ImageConfig, recipe_from_dict
    from banglaocr.infer import ReadSettings

    if recipe is not None and not settings.trained:
        settings = ReadSettings(image=data_cfg.image, prompt=data_cfg.prompt, max_new_tokens=eval_cfg.max_new_tokens,
                                origin=f"the budget of the recipe {recipe}")
    if image:
        base = settings.image if isinstance(settings.image, ImageConfig) else data_cfg.image
        # The recipe loader's checks and messages (unknown key, multiple of 32, type), for one section.
        raw = {"model": {"name_or_path": "-"}, "data": {"source": "-", "image": dataclasses.asdict(base)}}
        built = recipe_from_dict(raw, [f"data.image.{item}" for item in image]).data.image
        settings = dataclasses.replace(settings, image=built, origin=f"{settings.origin} with --image {' '.join(image)}")
    from banglaocr.cli.overrides import with_reading_overrides

    return with_reading_overrides(settings, overrides or [])


def _records(splits, split: str, max_samples: int | None = None) -> list:
    """The first `max_samples` records of `split`; a split without any is a `UserError` that says why (a few
    rows with nothing held out: `--split all`)."""
    from banglaocr.errors import UserError

    if split not in SPLIT_CHOICES:
        raise UserError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if split == "all":  # a test-only folder has no train split: all = what there is
        records = splits.train_records + splits.val + splits.test
    else:
        records = splits.split(split)
    if not records:
        raise UserError(splits.why_empty(split) if split != "all" else
                        f"{splits.source} holds no usable sample ({splits.skipped.summary()})")
    return records[:max_samples]


def evaluate(model: str, adapter: str | None, records: list, settings, batch_size: int, num_beams: int,
             precision: str, device: str | None, show_progress: bool):
    """Generate for every record with `settings` (`reading_settings`): (scores and run facts, per-sample rows
    in input order, `SkipReport` of the images that could not be decoded). Under `accelerate launch` the
    processes share the generation (`evaluation.evaluate_records`) and every one returns the same."""
    from banglaocr.data.sources import SkipReport, unreadable_reason
    from banglaocr.errors import UserError
    from banglaocr.evaluation import evaluate_records

    rank, world, launched_device = launched_processes()
    loaded, _ = load_quietly(model, adapter, precision, device or launched_device)
    start = time.perf_counter()
    with progress_bar(len(records), "eval", show=show_progress and rank == 0) as advance:
        result = evaluate_records(loaded.model, loaded.tokenizer, records, settings, batch_size=batch_size,
                                  num_beams=num_beams, on_batch=advance, process_index=rank, num_processes=world)
    unreadable = SkipReport()
    for sample_id, error in result.unreadable:
        unreadable.add(unreadable_reason(error), sample_id)
    rows = result.rows
    seconds = time.perf_counter() - start
    if result.scores is None:
        raise UserError(f"no sample could be read ({unreadable.summary()})")
    scores = dict(result.scores)
    network = loaded.model
    parameter = next(network.parameters())
    scores.update({
        "images_per_s": (len(rows) + unreadable.total) / max(seconds, 1e-9),
        "seconds": seconds,
        "unreadable_images": unreadable.total,
        "unreadable": unreadable.as_dict(),  # reasons and a few example ids
        "device": str(parameter.device),
        "dtype": str(parameter.dtype).replace("torch.", ""),
        "max_new_tokens": settings.max_new_tokens,
        "geometry": settings.geometry(),
        "processes": world,
    })
    return scores, rows, unreadable


def eval_command(
    model: ModelOption,
    overrides: OverridesArgument = None,
    adapter: AdapterOption = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", metavar="DATA", help="Data set: local folder, manifest or hub id.")
    ] = None,
    split: Annotated[
        str, typer.Option("--split", metavar=one_of(SPLIT_CHOICES),
                          help="Split to evaluate (all: every sample of the source).")
    ] = "test",
    classes: Annotated[
        list[str] | None,
        typer.Option("--classes", metavar="NAME",
                     help="With --dataset: keep only these classes (repeat the option), as the "
                          "training recipe's data.classes did, so the seeded split is the same."),
    ] = None,
    recipe: RecipeOption = None,
    image: ImageOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="DIR",
                                  help="Output folder (default: eval-SPLIT in the model folder).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", min=1, metavar="N",
                                 help="Images per batch (default: recipe's, else 16).")
    ] = None,
    max_samples: Annotated[
        int | None, typer.Option("--max-samples", "-n", min=1, metavar="N",
                                 help="Evaluate the first N samples of the split.")
    ] = None,
    num_beams: Annotated[
        int | None, typer.Option("--num-beams", min=1, metavar="N",
                                 help="Beam width (default: recipe's, else 1 = greedy).")
    ] = None,
    precision: PrecisionOption = "auto",
    device: DeviceOption = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a model on a labelled split by real generation: CER, WER, grapheme error rate, exact match.

    Example: banglaocr eval --model runs/cpu_demo --recipe runs/cpu_demo/recipe.yaml

    Or: banglaocr eval --model Qwen/Qwen3-VL-2B-Instruct --adapter runs/kaggle_t4x2/best --dataset swapnillo/BN-HTR-Handwritten-Dataset --classes word

    A base read by its own preprocessing (no banglaocr.json): banglaocr eval --model Qwen/Qwen3-VL-2B-Instruct --dataset my_words/
    """
    with user_errors():
        from banglaocr.data.sources import load_splits
        from banglaocr.infer import read_settings, resolve_model

        model, adapter = expand_home(model, "--model"), adapter and expand_home(adapter, "--adapter")
        out_dir = _claim_out_dir(out, model, adapter, split, overwrite)
        data_cfg, eval_cfg = _data_config(dataset, recipe, classes, overrides)
        settings = reading_settings(read_settings(model, adapter), data_cfg, eval_cfg, recipe, image, overrides)
        splits = load_splits(data_cfg)
        records = _records(splits, split, max_samples)
        batch_size = batch_size or eval_cfg.batch_size
        num_beams = num_beams or eval_cfg.num_beams
        scores, rows, unreadable = evaluate(model, adapter, records, settings, batch_size, num_beams, precision,
                                            device, show_progress=len(records) > batch_size)
        summary = {"model": model, "model_folder": resolve_model(model), "adapter": adapter,
                   "data": data_cfg.source, "split": split, "batch_size": batch_size, "num_beams": num_beams,
                   **scores,
                   # What the source loader skipped (empty labels, missing or empty files), over all splits.
                   "skipped_at_load": splits.skipped.total, "skipped_at_load_detail": splits.skipped.as_dict(),
                   "predictions": str(out_dir / "predictions.jsonl"), "confidence": confidence_report(rows)}
        rank, world, _ = launched_processes()
        leave_launched_processes(world)
        if rank != 0:  # several processes: the main one writes and reports
            return
        _write_outputs(out_dir, summary, rows)

    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print_report(summary, rows, out_dir)
    _warn(summary, unreadable, as_json)


def _warn(summary: dict, unreadable, as_json: bool) -> None:
    """One line on stderr for skipped images (tables only) and for non-finite logits (always)."""
    if unreadable.total and not as_json:
        err_console.print(f"[yellow]{unreadable.summary()}[/]", highlight=False)
    if summary.get("nonfinite_logits"):
        from banglaocr.infer import NONFINITE_ERROR

        err_console.print(f"[yellow]{summary['nonfinite_logits']} sample(s): {NONFINITE_ERROR}; scored as empty "
                          "predictions (marked \"nonfinite\" in predictions.jsonl)[/]", highlight=False)


def _claim_out_dir(out: Path | None, model: str, adapter: str | None, split: str, overwrite: bool) -> Path:
    """--out (or the default), checked before minutes of loading and reading: whose folder it is under the
    output policy, and whether it can be written."""
    out_dir = expand_home(out, "--out") if out is not None else default_out_dir(model, adapter, split)
    claim_folder(out_dir, "eval", RESULT_FILES, overwrite=overwrite, is_ours=is_eval_folder)
    check_writable(out_dir, "folder")
    return out_dir


def is_eval_folder(folder: Path) -> bool:
    """A folder eval wrote: its summary.json is an eval summary (this version's and earlier ones')."""
    try:
        summary = json.loads((folder / "summary.json").read_bytes().decode("utf-8")) \
            if path_kind(folder / "summary.json") == "file" else None
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"model", "data", "split", "predictions"} <= set(summary)


def _write_outputs(out_dir: Path, summary: dict, rows: list[dict]) -> None:
    """predictions.jsonl, then summary.json (the folder's marker), each written whole and renamed into place."""
    from banglaocr.errors import UserError
    from banglaocr.files import atomic_write, write_json
    from banglaocr.reliability_plot import write_reliability_plot

    def write_rows(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            for row in rows:
                kept = {key: row[key] for key in ("id", "reference", "prediction", "cer", "confidence")}
                if row.get("nonfinite"):
                    kept["nonfinite"] = True  # nothing was read: the empty prediction is a stand-in
                handle.write(json_line(kept))

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / RESULT_FILES[0], write_rows)
        write_reliability_plot(summary["confidence"]["bins"], out_dir / RESULT_FILES[2],
                               auroc=summary["confidence"]["auroc"], title=f"{summary['model']} [{summary['split']}]")
        write_json(out_dir / RESULT_FILES[1], summary)
    except OSError as err:
        raise UserError(write_error_line(out_dir, err)) from None


def _print_report(summary: dict, rows: list[dict], out_dir: Path) -> None:
    from rich.text import Text

    from banglaocr.cli.tables import AlignedTable

    # The geometry first: a base read by its own preprocessing and one read at a budget score differently.
    if summary.get("geometry"):
        console.print(f"images: {summary['geometry']['description']}", highlight=False, soft_wrap=True)
    table = AlignedTable(title=f"{summary['model']} on {summary['data']} [{summary['split']}]: {summary['n']} samples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("CER (corpus: edits / reference chars)", f"{summary['cer']:.4f}")
    table.add_row("CER (mean per sample)", f"{summary['mean_cer']:.4f}")
    table.add_row("WER", f"{summary['wer']:.4f}")
    table.add_row("grapheme error rate", f"{summary['ger']:.4f}")
    table.add_row("exact match", f"{summary['exact_match']:.4f}")
    table.add_row("empty predictions", str(summary["empty_predictions"]))
    if summary.get("nonfinite_logits"):
        table.add_row("non-finite logits (scored empty)", str(summary["nonfinite_logits"]))
    table.add_row("unreadable images (skipped)", str(summary["unreadable_images"]))
    table.add_row("images / s (decode + generate)", f"{summary['images_per_s']:.1f}")
    table.add_row("run", f"{summary['device']} {summary['dtype']}, batch {summary['batch_size']}, "
                         f"{'greedy' if summary['num_beams'] == 1 else str(summary['num_beams']) + ' beams'}")
    console.print(table)

    worst = AlignedTable(title=f"worst {min(WORST, len(rows))} samples")  # Bangla cells, aligned
    for column in ("id", "reference", "prediction"):
        worst.add_column(column)
    worst.add_column("CER", justify="right")
    for row in sorted(rows, key=lambda row: (-row["cer"], row["id"]))[:WORST]:
        # Text, not markup: ids and labels are data ("[" in a file name is not a style).
        prediction = Text(row["prediction"]) if row["prediction"] else Text("(empty)", style="dim")
        # An id is a file name of any bytes: escaped, so a line break or a byte that is not UTF-8 prints as text.
        worst.add_row(Text(escape_field(row["id"])), Text(row["reference"]), prediction, f"{row['cer']:.3f}")
    console.print(worst)
    _print_confidence(summary["confidence"])
    console.print(f"wrote {out_dir / 'predictions.jsonl'}, {out_dir / 'summary.json'} and "
                  f"{out_dir / 'reliability.png'}", highlight=False, soft_wrap=True)


def _print_confidence(report: dict) -> None:
    """The AUROC line and the coverage table: how well the model's confidence ranks its errors."""
    from banglaocr.cli.tables import AlignedTable

    auroc = report["auroc"]
    shown = "undefined (every reading right, or every one wrong)" if auroc is None else f"{auroc:.3f}"
    unranked = f"; {report['without_confidence']} without confidence (blank, non-finite)" \
        if report["without_confidence"] else ""
    console.print(f"confidence vs exact match: AUROC {shown} (1.0: every right reading is more confident than "
                  f"every wrong one; 0.5: chance){unranked}", highlight=False, soft_wrap=True)
    if not report["coverage"]:
        return
    table = AlignedTable(title="the most confident readings")
    for column in ("coverage", "readings", "confidence >=", "CER", "exact match"):
        table.add_column(column, justify="right")
    for row in report["coverage"]:
        table.add_row(f"{row['coverage']:.0%}", str(row["n"]), f"{row['min_confidence']:.4f}", f"{row['cer']:.4f}",
                      f"{row['exact_match']:.4f}")
    console.print(table)
