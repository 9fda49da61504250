"""Word-box scoring: IoU and one-to-one matching, against brute force on random boxes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from banglaocr.pages.scoring import iou, iou_matrix, match_boxes, precision_recall


def _pixel_iou(a, b) -> float:
    """IoU by counting pixels on a grid: the reference."""
    grid_a = np.zeros((40, 40), bool)
    grid_b = np.zeros((40, 40), bool)
    grid_a[a[1]:a[3], a[0]:a[2]] = True
    grid_b[b[1]:b[3], b[0]:b[2]] = True
    union = (grid_a | grid_b).sum()
    return float((grid_a & grid_b).sum() / union) if union else 0.0


def _random_boxes(rng, n):
    boxes = []
    for _ in range(n):
        x0, y0 = rng.integers(0, 30, size=2)
        boxes.append((int(x0), int(y0), int(x0 + rng.integers(1, 10)), int(y0 + rng.integers(1, 10))))
    return boxes


def test_iou_and_the_matrix_equal_pixel_counting():
    rng = np.random.default_rng(0)
    found, truth = _random_boxes(rng, 30), _random_boxes(rng, 20)
    matrix = iou_matrix(found, truth)
    for i, a in enumerate(found):
        for j, b in enumerate(truth):
            assert iou(a, b) == pytest.approx(_pixel_iou(a, b))
            assert matrix[i, j] == pytest.approx(_pixel_iou(a, b))


def _best_matching_size(found, truth, threshold) -> int:
    """The largest one-to-one matching of pairs with IoU >= threshold, by trying every assignment."""
    best = 0
    for chosen in itertools.permutations(range(len(truth)), min(len(found), len(truth))):
        count = sum(iou(found[i], truth[j]) >= threshold for i, j in enumerate(chosen))
        best = max(best, count)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_greedy_matching_is_one_to_one_and_as_large_as_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = _random_boxes(rng, 5)
    # found boxes: the true boxes moved a little, some dropped, some extra - like a segmenter's output
    found = [(x0 + int(rng.integers(-2, 3)), y0, x1 + int(rng.integers(-2, 3)), y1) for x0, y0, x1, y1 in truth
             if rng.random() < 0.8] + _random_boxes(rng, 2)
    pairs = match_boxes(found, truth)
    assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
    assert all(iou(found[i], truth[j]) >= 0.5 for i, j in pairs)
    # At IoU >= 0.5 a box can hardly overlap two others that much, so greedy finds the largest matching.
    assert len(pairs) == _best_matching_size(found, truth, 0.5)


def test_precision_and_recall_count_unmatched_boxes_on_both_sides():
    truth = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)]
    found = [(0, 0, 10, 10), (20, 0, 50, 10)]  # the last two true words merged into one box
    assert precision_recall(found, truth) == (0.5, pytest.approx(1 / 3))
    assert precision_recall([], truth) == (1.0, 0.0)
    assert precision_recall([], []) == (1.0, 1.0)
