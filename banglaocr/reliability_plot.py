"""The reliability plot of eval: does the model's confidence mean what it says?

Readings are grouped by confidence (`confidence.reliability_bins`); each bin's bar is the share of its
readings read exactly right, drawn over the diagonal a perfectly calibrated reader would follow, with the
count of readings above each bar. Rendered with Agg (no display needed).

>>> import tempfile, pathlib
>>> from banglaocr.confidence import reliability_bins
>>> path = pathlib.Path(tempfile.mkdtemp()) / "reliability.png"
>>> write_reliability_plot(reliability_bins([0.2, 0.9, 0.95], [False, True, True]), path, auroc=1.0).name
'reliability.png'
"""

from __future__ import annotations

from pathlib import Path


def write_reliability_plot(bins: list[dict], path: Path | str, *, auroc: float | None, title: str = "") -> Path:
    """Save the plot of `bins` (`confidence.reliability_bins`) as a PNG at `path` (written whole, then
    renamed into place) and return `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from banglaocr.files import atomic_write

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    try:
        width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
        filled = [b for b in bins if b["count"]]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
        ax.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
               color="#4c72b0", edgecolor="white", label="exact match in bin")
        ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="#dd8452",
                label="mean confidence in bin")
        for b in filled:
            ax.annotate(str(b["count"]), (b["low"] + width / 2, b["accuracy"]), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("confidence (probability of the whole reading)")
        ax.set_ylabel("exact match")
        shown = "undefined (all readings right, or all wrong)" if auroc is None else f"{auroc:.3f}"
        ax.set_title(f"{title}\nAUROC of confidence vs exact match: {shown}".strip(), fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return path
