"""Word boxes against true boxes: IoU, one-to-one matching, precision and recall at an IoU threshold.

Matching is greedy by IoU: the pair with the highest IoU is matched first, then the next among the boxes
still free, down to `threshold`. (For boxes of words on a page, where a found box overlaps at most two or
three true ones, greedy and optimal matching agree almost always; the tests check it against brute force.)

>>> found = [(0, 0, 10, 10), (20, 0, 30, 10), (50, 0, 60, 10)]
>>> truth = [(1, 0, 10, 10), (20, 0, 40, 10)]
>>> round(iou(found[1], truth[1]), 2), match_boxes(found, truth)
(0.5, [(0, 0), (1, 1)])
>>> precision_recall(found, truth)
(0.6666666666666666, 1.0)
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLD = 0.5


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (x1, y1 exclusive); 0 for empty boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(found, truth) -> np.ndarray:
    """IoU of every found box (rows) with every true box (columns), vectorised."""
    f = np.asarray(found, np.float64).reshape(-1, 4)
    t = np.asarray(truth, np.float64).reshape(-1, 4)
    width = np.minimum(f[:, None, 2], t[None, :, 2]) - np.maximum(f[:, None, 0], t[None, :, 0])
    height = np.minimum(f[:, None, 3], t[None, :, 3]) - np.maximum(f[:, None, 1], t[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_f = (f[:, 2] - f[:, 0]) * (f[:, 3] - f[:, 1])
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    union = area_f[:, None] + area_t[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(found, truth, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one (found index, true index) pairs with IoU >= `threshold`, greedy by IoU, sorted."""
    if len(found) == 0 or len(truth) == 0:
        return []
    scores = iou_matrix(found, truth)
    rows, cols = np.nonzero(scores >= threshold)
    order = np.argsort(-scores[rows, cols], kind="stable")
    used_f, used_t, pairs = set(), set(), []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def precision_recall(found, truth, threshold: float = IOU_THRESHOLD) -> tuple[float, float]:
    """Share of found boxes matched, share of true boxes matched (1.0 where there is nothing to find)."""
    matched = len(match_boxes(found, truth, threshold))
    return (matched / len(found) if len(found) else 1.0, matched / len(truth) if len(truth) else 1.0)
