"""The shape of the code: short functions, one direction of imports, each constant defined once.

Imports go one way: cli -> train / infer side -> data / model -> text, config. Inference (`infer`,
`evaluation`, `merge`, `report` and the commands that read with a model) never needs the trainer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "banglaocr"
MAX_FUNCTION_LINES = 80
INFERENCE_SIDE = ["banglaocr/infer.py", "banglaocr/evaluation.py", "banglaocr/merge.py", "banglaocr/report.py",
                  "banglaocr/confusion.py", "banglaocr/files.py", "banglaocr/cli/eval.py", "banglaocr/cli/predict.py",
                  "banglaocr/cli/merge_lora.py", "banglaocr/cli/confusion_report.py"]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_inference_side_never_imports_the_trainer():
    root = PACKAGE.parent
    offenders = {name: sorted(m for m in imported_modules(root / name) if m.startswith("banglaocr.train"))
                 for name in INFERENCE_SIDE}
    assert not any(offenders.values()), offenders


def test_loading_the_inference_side_loads_no_training_module():
    code = ("import sys, banglaocr.infer, banglaocr.evaluation, banglaocr.merge, banglaocr.report; "
            "print(sorted(m for m in sys.modules if m.startswith('banglaocr.train')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_data_model_text_and_config_never_import_the_layers_above():
    above = ("banglaocr.train", "banglaocr.cli", "banglaocr.infer", "banglaocr.evaluation", "banglaocr.merge",
             "banglaocr.report")
    lower = [*PACKAGE.joinpath("data").glob("*.py"), *PACKAGE.joinpath("model").glob("*.py"),
             PACKAGE / "text.py", PACKAGE / "config.py", PACKAGE / "metrics.py", PACKAGE / "confusion.py",
             PACKAGE / "files.py", PACKAGE / "errors.py"]
    offenders = {str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if m.startswith(above))
                 for path in lower}
    assert not any(offenders.values()), offenders


def test_each_module_constant_is_defined_once():
    """An UPPER_CASE name assigned at module level in two modules is one value written twice (or two
    meanings under one name): both are traps."""
    where = defaultdict(list)
    for path in modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and len(target.id) > 1:
                    where[target.id].append(str(path.relative_to(PACKAGE)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, twice
