"""Whether a live (redrawn) progress display suits this output: a terminal, or Jupyter itself - not a pipe, a
file or a notebook's `!` cell. Used by training's progress, its start-up spinners and eval/predict's bars.
"""

from __future__ import annotations

import os
from typing import Mapping

from rich.console import Console


def wants_live_display(console: Console, environ: Mapping[str, str] | None = None) -> bool:
    """True where a live bar redraws in place for someone watching it: a terminal (a tty), or a Jupyter
    kernel itself (rich draws it as a notebook widget there).

    False for a pipe or a file, and for a `!` cell of a Jupyter notebook - a Kaggle one included - even
    though IPython runs `!` commands on a pseudo-terminal (and the kernel sets FORCE_COLOR): the cell output
    keeps every redraw, 10 a second for hours, in the saved notebook. Such a command is recognised by
    what its kernel leaves in the environment: JPY_PARENT_PID (Jupyter's kernel launcher) or
    KAGGLE_KERNEL_RUN_TYPE (any Kaggle notebook).

    >>> import io
    >>> wants_live_display(Console(file=io.StringIO(), force_terminal=True))
    False
    """
    environ = os.environ if environ is None else environ
    if console.is_jupyter:
        return True
    if environ.get("JPY_PARENT_PID") or environ.get("KAGGLE_KERNEL_RUN_TYPE") or not console.is_interactive:
        return False
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed file
        return False
