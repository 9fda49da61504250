"""`banglaocr merge-lora`: fold a LoRA adapter into its base; save a full model folder checked against the adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from banglaocr.cli.common import JsonOption, console, user_errors, without_transformers_progress
from banglaocr.cli.conventions import one_of

Dtype = Literal["float32", "float16", "bfloat16"]


def merge_lora(
    adapter: Annotated[
        Path,
        typer.Option("--adapter", "-a", metavar="DIR",
                     help="Adapter folder (adapter_config.json inside), or a training output "
                          "folder: its best/ adapter is used (final/ when there is no best/)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Folder to write the merged model to.")],
    base: Annotated[
        str | None,
        typer.Option("--base", metavar="MODEL",
                     help="Base model (hub id or folder) instead of the one the adapter names."),
    ] = None,
    dtype: Annotated[
        Dtype,
        typer.Option("--dtype", metavar=one_of(Dtype),
                     help="Weight dtype of the merged model: float32 on T4s (banglaocr reads it in fp16 there, "
                          "the vision tower in fp32; a float16 file read by plain transformers runs Qwen3-VL's "
                          "vision tower in fp16, which can overflow); bfloat16 for A100/H100 and vLLM."),
    ] = "float32",
    overwrite: Annotated[
        bool, typer.Option("--overwrite",
                           help="Replace an existing --out folder as a whole (--force is the same flag, its "
                                "earlier name). Never the adapter or base folder, nor one holding them, nor the "
                                "current or home folder.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="The same as --overwrite (its earlier name).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Merge a LoRA adapter into its base model; check merged vs adapter logits before saving.

    The merged folder loads with plain transformers (AutoModelForImageTextToText + AutoProcessor).
    It keeps banglaocr.json, so eval and predict read images exactly as in training.
    Nothing is written when the logits check fails (exit code 2). An existing --out folder, even an
    earlier merge, is replaced only with --overwrite (or --force).

    On a T4 keep the default float32 (see --dtype); on A100/H100: --dtype bfloat16.

    Example: banglaocr merge-lora --adapter runs/kaggle_t4x2/best --out runs/kaggle_t4x2/merged
    """
    with user_errors():
        from banglaocr.files import expand_home
        from banglaocr.merge import merge_lora as run_merge

        adapter, base = expand_home(adapter, "--adapter"), base and expand_home(base, "--base")
        with without_transformers_progress():
            report = run_merge(adapter, expand_home(out, "--out"), base=base, dtype=dtype, force=overwrite or force)

    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    console.print(f"max |logits merged - adapter| = {report['max_abs_diff']:.3g} "
                  f"(tolerance {report['tolerance']:.3g}, {dtype}, {report['probe_tokens']} probe tokens; "
                  f"float32 merge alone {report['merge_max_abs_diff']:.3g})", highlight=False)
    console.print(f"merged {report['lora_layers']} LoRA layers of {report['adapter_dir']} into {report['base']}",
                  highlight=False)
    if report["read_settings"] == "default":
        console.print("[yellow]the adapter folder has no banglaocr.json: default read settings written[/]")
    console.print(f"merged model: [bold]{report['out_dir']}[/]", highlight=False)
