"""Which letters the model confuses: tables, CSV files and a heatmap from generated predictions.

Everything is counted from edit-operation ALIGNMENTS (`banglaocr.confusion.ConfusionStats`,
built on `banglaocr.metrics.edit_ops`), never by comparing position i with position i: one
missed letter at the start of a word would otherwise turn every later letter into a
"substitution". Both sides are normalised first (`banglaocr.text.normalize`), as for the metrics,
so the totals here are exactly the edits behind the CER (`level='char'`, code points) or the
grapheme error rate (`level='grapheme'`, clusters such as ক্ষ counted as one unit):

    substitutions + deletions + insertions == corpus_scores(...)["edits"]   (or "grapheme_edits")

Files written by `write_csvs` (UTF-8, no BOM; one file per table because each table has its own
columns - a single file with a `kind` column would be mostly empty cells):

- `substitutions.csv`: reference, predicted, count, reference_codepoints, predicted_codepoints
- `insertions.csv`: predicted, count, predicted_codepoints
- `deletions.csv`: reference, count, reference_support, reference_codepoints
- `per_char.csv` (`per_grapheme.csv` at grapheme level): unit, support, substitutions,
  deletions, errors, error_rate, codepoints - every reference unit seen, most errors first
- `summary.json`: level, samples and the totals (see `totals`)

The code-point columns (``U+09BF``) are there because several Bangla vowel signs look alike in a
spreadsheet and a lone sign may not render at all.

The heatmap (`write_heatmap`) draws real Bangla glyphs: the bundled Noto Sans Bengali is
registered with matplotlib and used for every label (DejaVu Sans, shipped with matplotlib,
fills in Latin letters and ∅, which the Bengali font lacks). A lone vowel sign or other
combining mark is shown on a dotted circle (◌ি), as in type specimens. Grapheme-level heatmaps
label rows and columns with whole clusters: matplotlib >= 3.11 shapes text with libraqm, so
conjuncts (ক্ষ, স্ত্রী) and pre-base vowel signs (কি) come out right; older matplotlib draws a
cluster's code points one after another (the hasanta stays visible) - still the right
letters, and the figure says so in a footnote.

>>> report = confusion_report(["কিনি", "বই"], ["কীনি", "রই"])
>>> report.substitutions
(('ব', 'র', 1), ('ি', 'ী', 1))
>>> report.totals["edits"], report.totals["reference_units"]
(2, 6)
>>> display_unit("ি"), display_unit(" "), display_unit("ক্ষ")
('◌ি', '␣', 'ক্ষ')
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from banglaocr.errors import UserError
from banglaocr.files import read_text
from banglaocr.metrics import error_rate
from banglaocr.confusion import ConfusionStats, Level, error_rates

BENGALI_FONT_FILE = Path(__file__).resolve().parent / "assets" / "fonts" / "NotoSansBengali-Regular.ttf"
# Shipped with every matplotlib: covers the Latin text, digits, ∅, ␣ and … the Bengali font lacks.
_FALLBACK_FAMILY = "DejaVu Sans"
DOTTED_CIRCLE = "\u25cc"
NOTHING = "\u2205"  # ∅: the deletion column and the insertion row of the heatmap
OTHER_LABEL = "other"
PREDICTION_COLUMNS = ("reference", "prediction")


# ---------------------------------------------------------------------------------------------
# Building the report (pure functions)
# ---------------------------------------------------------------------------------------------


def codepoints(unit: str) -> str:
    """The code points of `unit`, e.g. for a CSV column that survives any font.

    >>> codepoints("ক্ষ")
    'U+0995 U+09CD U+09B7'
    """
    return " ".join(f"U+{ord(char):04X}" for char in unit)


def display_unit(unit: str) -> str:
    """How a unit is shown in tables and on the heatmap.

    A unit that starts with a combining mark (a vowel sign such as ি or া, hasanta ্, anusvara ং,
    candrabindu ঁ) has nothing to sit on when shown alone, so it goes on a dotted circle ◌ the way
    type specimens show it; a space becomes ␣; invisible or control characters become their code
    point. Everything else is shown as is.

    >>> [display_unit(u) for u in ["া", "্", "ং", "ক", "কি", " "]]
    ['◌া', '◌্', '◌ং', 'ক', 'কি', '␣']
    >>> display_unit("\\u200d")
    'U+200D'
    """
    if unit == " ":
        return "\u2423"
    if unit and unicodedata.category(unit[0]).startswith("M"):
        return DOTTED_CIRCLE + unit
    if any(unicodedata.category(char).startswith(("C", "Z")) and char != " " for char in unit):
        return codepoints(unit)
    return unit


def ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(unit, count) pairs, largest count first; ties in code-point order so output is stable.

    >>> ranked({"খ": 1, "ক": 3, "গ": 1})
    [('ক', 3), ('খ', 1), ('গ', 1)]
    """
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def substitution_pairs(stats: ConfusionStats) -> list[tuple[str, str, int]]:
    """(reference unit, predicted unit, count) for every substitution, most frequent first.

    >>> stats = ConfusionStats().update(["কক", "ক"], ["খখ", "গ"])
    >>> substitution_pairs(stats)
    [('ক', 'খ', 2), ('ক', 'গ', 1)]
    """
    pairs = [(ref, hyp, n) for ref, row in stats.substitutions.items() for hyp, n in row.items()]
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def unit_rows(stats: ConfusionStats) -> list[dict]:
    """One row per reference unit seen: support, substitutions, deletions, errors, error_rate.

    Sorted by errors (most first), then support, then unit: the first rows are the units that
    cost the most CER. A unit with support 1 and one error has rate 1.0 but costs little - rank
    by rate only among well-supported units (see `worst_units`).

    >>> unit_rows(ConfusionStats().update(["কখ", "ক"], ["খখ", ""]))[0]
    {'unit': 'ক', 'support': 2, 'substitutions': 1, 'deletions': 1, 'errors': 2, 'error_rate': 1.0}
    """
    rates = error_rates(stats)
    rows = []
    for unit, support in stats.support.items():
        substituted = sum(stats.substitutions.get(unit, {}).values())
        deleted = stats.deletions.get(unit, 0)
        rows.append({"unit": unit, "support": support, "substitutions": substituted, "deletions": deleted,
                     "errors": substituted + deleted, "error_rate": rates[unit]})
    return sorted(rows, key=lambda row: (-row["errors"], -row["support"], row["unit"]))


def worst_units(rows: Iterable[dict], min_support: int = 5, top: int | None = None) -> list[dict]:
    """`unit_rows` with support >= `min_support` and at least one error, highest error rate first.

    >>> rows = unit_rows(ConfusionStats().update(["কখ"] * 5 + ["গ"], ["খখ"] * 5 + ["ঘ"]))
    >>> [(r["unit"], r["error_rate"]) for r in worst_units(rows, min_support=5)]
    [('ক', 1.0)]
    """
    kept = [row for row in rows if row["support"] >= min_support and row["errors"] > 0]
    kept.sort(key=lambda row: (-row["error_rate"], -row["support"], row["unit"]))
    return kept if top is None else kept[:top]


def totals(stats: ConfusionStats) -> dict:
    """Corpus totals: substitutions + deletions + insertions == edits; error_rate = edits / reference_units.

    `error_rate` is the corpus CER at `level='char'` and the grapheme error rate at
    `level='grapheme'` (the same numbers `banglaocr.metrics.corpus_scores` reports).

    >>> t = totals(ConfusionStats().update(["কখ", "গ"], ["খখঘ", ""]))
    >>> t["substitutions"], t["deletions"], t["insertions"], t["edits"], t["reference_units"], t["error_rate"]
    (1, 1, 1, 3, 3, 1.0)
    """
    substitutions = sum(n for row in stats.substitutions.values() for n in row.values())
    deletions = sum(stats.deletions.values())
    insertions = sum(stats.insertions.values())
    edits = substitutions + deletions + insertions
    reference_units = sum(stats.support.values())
    return {"samples": stats.samples, "reference_units": reference_units, "substitutions": substitutions,
            "deletions": deletions, "insertions": insertions, "edits": edits,
            "error_rate": error_rate(edits, reference_units)}


def report_from_stats(stats: ConfusionStats) -> ConfusionReport:
    """A `ConfusionReport` from already accumulated statistics (e.g. a checkpoint's table)."""
    return ConfusionReport(
        level=stats.level,
        stats=stats,
        substitutions=tuple(substitution_pairs(stats)),
        insertions=tuple(ranked(stats.insertions)),
        deletions=tuple(ranked(stats.deletions)),
        units=tuple(unit_rows(stats)),
        totals=totals(stats),
    )


def confusion_report(references: Sequence[str], predictions: Sequence[str], level: Level = "char") -> ConfusionReport:
    """Align every (reference, prediction) pair and collect the confusion tables.

    >>> report = confusion_report(["আমি"], ["xআমি"])   # one insertion, not three substitutions
    >>> report.insertions, report.substitutions
    ((('x', 1),), ())
    """
    return report_from_stats(ConfusionStats(level=level).update(references, predictions))


def heatmap_table(report: ConfusionReport, top: int = 20) -> tuple[list[str | None], list[str | None], list[list[int]]]:
    """Rows, columns and counts of the heatmap of the `top` most confused units.

    Rows: the `top` reference units with the most errors, then `None` (∅: insertions, the
    prediction had a unit where the reference had none) if anything was inserted. Columns: the
    `top` predicted units those rows are most often read as (substitutions and insertions), then
    `""` ("other": the rest, so that each row adds up to that unit's errors) when needed, then
    `None` (∅: deleted). Unit strings are never empty, so `""` and `None` cannot clash with a unit.

    >>> report = confusion_report(["কম", "কম", "কম", "বই"], ["খম", "গম", "ম", "বইর"])
    >>> heatmap_table(report, top=5)
    (['ক', None], ['খ', 'গ', 'র', None], [[1, 1, 0, 1], [0, 0, 1, 0]])
    >>> heatmap_table(report, top=1)
    (['ক', None], ['খ', '', None], [[1, 1, 1], [0, 1, 0]])
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    stats = report.stats
    rows: list[str | None] = [row["unit"] for row in report.units if row["errors"] > 0][:top]
    read_as: dict[str, int] = {}
    for ref in rows:
        for hyp, n in stats.substitutions.get(ref, {}).items():
            read_as[hyp] = read_as.get(hyp, 0) + n
    for hyp, n in stats.insertions.items():
        read_as[hyp] = read_as.get(hyp, 0) + n
    columns: list[str | None] = [unit for unit, _ in ranked(read_as)[:top]]
    if len(read_as) > len(columns):
        columns.append("")
    columns.append(None)
    if stats.insertions:
        rows.append(None)
    shown = set(columns)

    def cell(ref: str | None, col: str | None) -> int:
        row = stats.insertions if ref is None else stats.substitutions.get(ref, {})
        if col is None:
            return 0 if ref is None else stats.deletions.get(ref, 0)
        if col == "":
            return sum(n for hyp, n in row.items() if hyp not in shown)
        return row.get(col, 0)

    return rows, columns, [[cell(ref, col) for col in columns] for ref in rows]


# ---------------------------------------------------------------------------------------------
# Reading predictions
# ---------------------------------------------------------------------------------------------


def load_prediction_pairs(path: Path | str) -> tuple[list[str], list[str]]:
    """References and predictions from a `predictions.jsonl` / `test_predictions.jsonl` file.

    Every non-blank line must be a JSON object with string `reference` and `prediction` fields
    (other fields such as `id`, `file_name`, `cer` are ignored). A null prediction counts as an
    empty one (all deletions): a failed generation is still an error, never a dropped row.
    Anything else raises `UserError` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"predictions file '{path}' does not exist")
    if not path.is_file():
        raise UserError(f"'{path}' is not a file (expected a predictions .jsonl file)")
    text = read_text(path)
    references: list[str] = []
    predictions: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number}: expected a JSON object with 'reference' and 'prediction'")
        missing = [name for name in PREDICTION_COLUMNS if name not in row]
        if missing:
            found = ", ".join(repr(key) for key in row) or "none"
            raise UserError(f"{path} line {number}: missing column(s) {', '.join(map(repr, missing))} "
                            f"(found {found})")
        reference, prediction = row["reference"], row["prediction"]
        if prediction is None:
            prediction = ""
        for name, value in (("reference", reference), ("prediction", prediction)):
            if not isinstance(value, str):
                raise UserError(f"{path} line {number}: '{name}' must be a string, got {type(value).__name__}")
        references.append(reference)
        predictions.append(prediction)
    if not references:
        raise UserError(f"{path}: no predictions in the file")
    return references, predictions


# ---------------------------------------------------------------------------------------------
# Writing: CSV files and the heatmap
# ---------------------------------------------------------------------------------------------


def csv_names(level: Level) -> dict[str, str]:
    """File name of each table at `level`.

    >>> csv_names("grapheme")["units"]
    'per_grapheme.csv'
    """
    return {"substitutions": "substitutions.csv", "insertions": "insertions.csv",
            "deletions": "deletions.csv", "units": f"per_{level}.csv"}


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_csvs(report: ConfusionReport, out_dir: Path | str) -> list[Path]:
    """Write the four CSV tables and `summary.json` into `out_dir`; return the paths written.

    Counts in the files add up: the `count` columns of substitutions + insertions + deletions sum
    to `summary.json`'s `edits`, the edits behind the CER (or grapheme error rate).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = csv_names(report.level)
    support = report.stats.support
    paths = {key: out_dir / name for key, name in names.items()}
    _write_csv(paths["substitutions"],
               ("reference", "predicted", "count", "reference_codepoints", "predicted_codepoints"),
               ((ref, hyp, n, codepoints(ref), codepoints(hyp)) for ref, hyp, n in report.substitutions))
    _write_csv(paths["insertions"], ("predicted", "count", "predicted_codepoints"),
               ((hyp, n, codepoints(hyp)) for hyp, n in report.insertions))
    _write_csv(paths["deletions"], ("reference", "count", "reference_support", "reference_codepoints"),
               ((ref, n, support.get(ref, 0), codepoints(ref)) for ref, n in report.deletions))
    _write_csv(paths["units"],
               ("unit", "support", "substitutions", "deletions", "errors", "error_rate", "codepoints"),
               ((row["unit"], row["support"], row["substitutions"], row["deletions"], row["errors"],
                 f"{row['error_rate']:.6f}", codepoints(row["unit"])) for row in report.units))
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps({"level": report.level, **report.totals, "files": sorted(names.values())},
                                  ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return [*paths.values(), summary]


def bengali_font_family() -> str:
    """Register the bundled Noto Sans Bengali with matplotlib and return its family name.

    Registering twice is harmless (matplotlib keeps one entry per file).

    >>> bengali_font_family()
    'Noto Sans Bengali'
    """
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(BENGALI_FONT_FILE))
    return font_manager.FontProperties(fname=str(BENGALI_FONT_FILE)).get_name()


def text_shaping_available() -> bool:
    """True when matplotlib shapes complex scripts (libraqm, matplotlib >= 3.11).

    Without it, a conjunct is drawn as its code points side by side (hasanta visible) and a
    pre-base vowel sign (ি in কি) after its consonant instead of before it.
    """
    from matplotlib import ft2font

    return bool(getattr(ft2font, "__libraqm_version__", ""))


def _label(key: str | None) -> str:
    if key is None:
        return NOTHING
    if key == "":
        return OTHER_LABEL
    return display_unit(key)


def heatmap_figure(report: ConfusionReport, top: int = 20, *, dpi: int = 150):
    """A matplotlib `Figure` (no pyplot, no global backend change) of `heatmap_table(report, top)`.

    Rows are reference units (support in brackets), columns what they were read as; ∅ column =
    deleted, ∅ row = inserted, "other" = predicted units outside the top columns. Cells show
    counts, so each row adds up to that unit's errors. A report with no errors gives a figure
    that says so.
    """
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    family = bengali_font_family()
    rows, columns, counts = heatmap_table(report, top)
    level_name = "character" if report.level == "char" else "grapheme cluster"
    rate_name = "CER" if report.level == "char" else "grapheme error rate"
    t = report.totals
    title = (f"Most confused {level_name}s: {t['samples']} samples, {rate_name} {t['error_rate']:.4f} = "
             f"{t['edits']} edits / {t['reference_units']} units\n"
             f"({t['substitutions']} substituted, {t['deletions']} deleted, {t['insertions']} inserted)")
    # Every text in the figure uses the Bengali font first; matplotlib falls back per glyph to
    # DejaVu Sans for what it lacks. rc_context keeps the settings out of the caller's matplotlib.
    settings = {"font.family": [family, _FALLBACK_FAMILY]}
    if "text.language" in matplotlib.rcParams:  # matplotlib >= 3.11: tell the shaper the text is Bangla
        settings["text.language"] = "bn"
    with matplotlib.rc_context(settings):
        if not rows:
            fig = Figure(figsize=(6, 2), dpi=dpi)
            fig.text(0.5, 0.5, title.split("\n")[0] + "\nno errors: nothing to show", ha="center", va="center")
            return fig
        matrix = np.array(counts, dtype=float)
        width = 2.2 + 0.42 * len(columns)
        height = 1.9 + 0.36 * len(rows)
        fig = Figure(figsize=(max(width, 7.5), max(height, 3.5)), dpi=dpi, layout="constrained")
        ax = fig.add_subplot()
        shown = np.ma.masked_equal(matrix, 0)  # zero cells stay white: the eye goes to real confusions
        image = ax.imshow(shown, cmap="Reds", aspect="auto", vmin=0, vmax=max(matrix.max(), 1),
                          interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, pad=0.01, label="count")
        support = report.stats.support
        row_labels = [NOTHING + " (inserted)" if ref is None else f"{display_unit(ref)}  ({support[ref]})"
                      for ref in rows]
        ax.set_xticks(range(len(columns)), [_label(col) for col in columns], fontsize=12)
        ax.set_yticks(range(len(rows)), row_labels, fontsize=12)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel("predicted (∅ = deleted)")
        ax.set_ylabel("reference (support)")
        ax.set_title(title, fontsize=10, loc="left")
        # Thin grid lines between cells so neighbouring white cells read as separate boxes.
        ax.set_xticks(np.arange(-0.5, len(columns)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
        ax.grid(which="minor", color="0.9", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
        threshold = matrix.max() * 0.6
        for i, row in enumerate(counts):
            for j, value in enumerate(row):
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                            color="white" if value > threshold else "black")
        if report.level == "grapheme" and not text_shaping_available():
            fig.text(0.01, 0.005, "matplotlib < 3.11 does not shape text: conjuncts are drawn letter by letter",
                     fontsize=7, color="0.4")
    return fig


def write_heatmap(report: ConfusionReport, path: Path | str, top: int = 20, *, dpi: int = 150) -> Path:
    """Save `heatmap_figure(report, top)` as a PNG (rendered with Agg) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = heatmap_figure(report, top, dpi=dpi)
    fig.savefig(path, format="png")
    return path


@dataclass(frozen=True)
class ConfusionReport:
    """Confusion tables of one set of predictions at one level ('char' or 'grapheme').

    `substitutions`: (reference unit, predicted unit, count), most frequent first;
    `insertions` / `deletions`: (unit, count), most frequent first; `units`: `unit_rows`;
    `totals`: `totals` (substitutions + deletions + insertions == edits behind the error rate);
    `stats`: the underlying `ConfusionStats`.
    """

    level: Level
    stats: ConfusionStats
    substitutions: tuple[tuple[str, str, int], ...]
    insertions: tuple[tuple[str, int], ...]
    deletions: tuple[tuple[str, int], ...]
    units: tuple[dict, ...]
    totals: dict
