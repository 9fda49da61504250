"""`banglaocr confusion-report`: which letters the model confuses, from a predictions file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import console, user_errors
from banglaocr.cli.conventions import one_of
from banglaocr.confusion import Level


def confusion_report(
    predictions: Annotated[
        Path,
        typer.Argument(metavar="PREDICTIONS",
                       help="A .jsonl file of rows with 'reference' and 'prediction' (predictions.jsonl from eval, "
                            "test_predictions.jsonl from train)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR",
                     help="Folder for the CSV files and confusion_heatmap.png "
                          "(default: confusion-LEVEL/ beside the predictions file)."),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-k", min=1, metavar="N", help="Rows per table and units per heatmap axis.")
    ] = 20,
    level: Annotated[
        Level,
        typer.Option("--level", metavar=one_of(Level),
                     help="Unit of comparison: 'char' (code points, as CER counts) or 'grapheme' "
                          "(clusters such as ক্ষ, as a reader sees letters)."),
    ] = "char",
    min_support: Annotated[
        int, typer.Option("--min-support", min=1, metavar="N", help="Worst-units table: ignore units seen fewer times.")
    ] = 5,
) -> None:
    """Confusion tables, CSV files and a heatmap of a predictions file, from aligned edits.

    Example: banglaocr confusion-report runs/cpu_demo/test_predictions.jsonl --level grapheme --top 15
    """
    with user_errors():
        from banglaocr.errors import UserError
        from banglaocr.report import confusion_report as build_report
        from banglaocr.report import load_prediction_pairs, write_csvs, write_heatmap

        references, hypotheses = load_prediction_pairs(predictions)
        report = build_report(references, hypotheses, level=level)
        out_dir = out if out is not None else predictions.parent / f"confusion-{level}"
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out '{out_dir}' exists and is not a folder")
        written = write_csvs(report, out_dir)
        heatmap = write_heatmap(report, out_dir / "confusion_heatmap.png", top=top)

    _print_report(report, top, min_support)
    console.print(f"wrote {', '.join(path.name for path in [*written, heatmap])} to [bold]{out_dir}[/]",
                  highlight=False)


def _print_report(report, top: int, min_support: int) -> None:
    from banglaocr.cli.tables import AlignedTable  # Bangla cells, aligned in the cells terminals draw
    from banglaocr.report import codepoints, display_unit, worst_units

    t = report.totals
    unit_name = "char" if report.level == "char" else "grapheme"
    rate_name = "CER" if report.level == "char" else "grapheme error rate"
    support = report.stats.support

    subs = AlignedTable(title=f"top substitutions ({unit_name})")
    for name in ("reference", "predicted", "count", "share of reference", "code points"):
        subs.add_column(name, justify="right" if name in ("count", "share of reference") else "left")
    for ref, hyp, n in report.substitutions[:top]:
        subs.add_row(display_unit(ref), display_unit(hyp), str(n), f"{n / support[ref]:.1%}",
                     f"{codepoints(ref)} -> {codepoints(hyp)}")

    dels = AlignedTable(title=f"top deletions ({unit_name})")
    for name in ("reference", "count", "support", "code points"):
        dels.add_column(name, justify="right" if name in ("count", "support") else "left")
    for ref, n in report.deletions[:top]:
        dels.add_row(display_unit(ref), str(n), str(support[ref]), codepoints(ref))

    ins = AlignedTable(title=f"top insertions ({unit_name})")
    for name in ("predicted", "count", "code points"):
        ins.add_column(name, justify="right" if name == "count" else "left")
    for hyp, n in report.insertions[:top]:
        ins.add_row(display_unit(hyp), str(n), codepoints(hyp))

    worst = AlignedTable(title=f"worst {unit_name}s by error rate (support >= {min_support})")
    for name in ("unit", "error rate", "support", "substituted", "deleted", "code points"):
        worst.add_column(name, justify="left" if name in ("unit", "code points") else "right")
    for row in worst_units(report.units, min_support=min_support, top=top):
        worst.add_row(display_unit(row["unit"]), f"{row['error_rate']:.1%}", str(row["support"]),
                      str(row["substitutions"]), str(row["deletions"]), codepoints(row["unit"]))

    for table in (subs, dels, ins, worst):
        if table.row_count:
            console.print(table)
    console.print(
        f"[bold]{t['samples']}[/] samples, {t['reference_units']} reference {unit_name}s: "
        f"{t['edits']} edits = {t['substitutions']} substitutions + {t['deletions']} deletions + "
        f"{t['insertions']} insertions; {rate_name} [bold]{t['error_rate']:.4f}[/]",
        highlight=False,
    )
