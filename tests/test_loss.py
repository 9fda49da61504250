"""Supervised-position loss against F.cross_entropy and a hand-written focal reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from banglaocr.train import loss as loss_module
from banglaocr.train.loss import (
    gather_supervised,
    logit_row_stats,
    lm_loss_sum,
    supervised_token_count,
    token_losses,
    weighted_token_losses,
)


def _logits(n=6, vocab=11, seed=0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, vocab, generator=g) * 3).to(dtype)
    targets = torch.randint(0, vocab, (n,), generator=g)
    return logits, targets


def _focal_reference(logits, targets, gamma, eps):
    """Focal loss written the long way: probabilities, a smoothed target distribution, a dot."""
    probs = torch.softmax(logits.double(), dim=-1)
    vocab = logits.shape[-1]
    smooth = torch.full_like(probs, eps / vocab)
    smooth[torch.arange(len(targets)), targets] += 1.0 - eps
    ce = -(smooth * probs.log()).sum(-1)
    p_t = probs[torch.arange(len(targets)), targets]
    return (1.0 - p_t) ** gamma * ce


def test_plain_cross_entropy_when_gamma_and_smoothing_are_zero():
    logits, targets = _logits()
    expected = F.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(token_losses(logits, targets), expected, atol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_label_smoothing_equals_torch(eps):
    logits, targets = _logits(seed=1)
    expected = F.cross_entropy(logits, targets, label_smoothing=eps, reduction="none")
    assert torch.allclose(token_losses(logits, targets, label_smoothing=eps), expected, atol=1e-6)


@pytest.mark.parametrize(("gamma", "eps"), [(0.5, 0.0), (2.0, 0.0), (2.0, 0.1), (1.0, 0.2)])
def test_focal_equals_probability_reference(gamma, eps):
    logits, targets = _logits(seed=2)
    got = token_losses(logits, targets, focal_gamma=gamma, label_smoothing=eps)
    assert torch.allclose(got.double(), _focal_reference(logits, targets, gamma, eps), atol=1e-5)


def test_focal_p_t_comes_from_the_raw_logits_not_the_smoothed_ce():
    logits, targets = _logits(seed=3)
    eps, gamma = 0.3, 2.0
    got = token_losses(logits, targets, focal_gamma=gamma, label_smoothing=eps)
    smoothed_ce = F.cross_entropy(logits, targets, label_smoothing=eps, reduction="none")
    wrong = (1 - torch.exp(-smoothed_ce)) ** gamma * smoothed_ce
    assert not torch.allclose(got, wrong, atol=1e-4)


@pytest.mark.parametrize(("gamma", "eps"), [(0.0, 0.0), (0.5, 0.1), (2.0, 0.1)])
def test_gradcheck_float64(gamma, eps):
    logits, targets = _logits(n=3, vocab=5, seed=4, dtype=torch.float64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: token_losses(x, targets, focal_gamma=gamma, label_smoothing=eps), (logits,)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_confident_logits_stay_finite(dtype, gamma):
    # p_t rounds to 1 in every one of these dtypes: 1 - p_t is 0 and so is the focal factor.
    logits = torch.zeros(3, 8, dtype=dtype)
    targets = torch.tensor([0, 3, 7])
    logits[torch.arange(3), targets] = 60.0
    logits[1, 5] = -60.0
    logits.requires_grad_(True)
    loss = token_losses(logits, targets, focal_gamma=gamma, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


def _reference_token_losses(logits, targets, gamma, eps):
    """The formula on torch's own log_softmax (what token_losses computed before logit_row_stats)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    log_p_t = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    loss = (1.0 - eps) * -log_p_t - eps * log_probs.mean(dim=-1)
    return (-torch.expm1(log_p_t)).clamp_min(torch.finfo(torch.float32).tiny).pow(gamma) * loss


@pytest.mark.parametrize("chunk_elements", [1 << 21, 20, 1])  # all rows at once, 2 rows, 1 row a chunk
@pytest.mark.parametrize(("gamma", "eps"), [(0.0, 0.0), (2.0, 0.1), (0.5, 0.3)])
def test_losses_and_gradients_equal_log_softmax_reference(monkeypatch, chunk_elements, gamma, eps):
    monkeypatch.setattr(loss_module, "ROW_STATS_CHUNK_ELEMENTS", chunk_elements)
    logits, targets = _logits(n=7, vocab=11, seed=8)
    weights = torch.linspace(0.5, 2.0, 7)  # a different upstream gradient per row
    mine = logits.clone().requires_grad_(True)
    reference = logits.clone().requires_grad_(True)
    got = token_losses(mine, targets, focal_gamma=gamma, label_smoothing=eps)
    expected = _reference_token_losses(reference, targets, gamma, eps)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(mine.grad, reference.grad, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gradient_equals_reference_and_keeps_the_dtype(dtype):
    logits, targets = _logits(n=5, vocab=300, seed=9)
    mine = logits.to(dtype).requires_grad_(True)
    reference = logits.to(dtype).requires_grad_(True)
    token_losses(mine, targets, focal_gamma=2.0, label_smoothing=0.1).sum().backward()
    _reference_token_losses(reference, targets, 2.0, 0.1).sum().backward()
    assert mine.grad.dtype == dtype
    # Both round a float32 gradient to the half dtype once: equal to that dtype's precision.
    assert torch.allclose(mine.grad.float(), reference.grad.float(), atol=1e-3, rtol=1e-2)


def test_row_stats_gradcheck_each_output_alone():
    logits, targets = _logits(n=4, vocab=6, seed=10, dtype=torch.float64)
    logits.requires_grad_(True)
    for pick in range(3):  # the other two outputs take no part: their gradients arrive as zeros
        assert torch.autograd.gradcheck(lambda x, k=pick: logit_row_stats(x, targets)[k], (logits,))


def test_half_precision_logits_are_upcast():
    logits, targets = _logits(seed=5)
    half = logits.to(torch.bfloat16)
    expected = F.cross_entropy(half.float(), targets, reduction="none")
    assert torch.allclose(token_losses(half, targets), expected, atol=1e-6)


def test_gather_uses_the_shifted_positions():
    # Each hidden row is its own position index, so the gathered rows show which positions were used.
    hidden = torch.arange(5.0).reshape(1, 5, 1).repeat(2, 1, 1)
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 4, -100, -100, 9]])
    rows, targets, index = gather_supervised(hidden, labels)
    assert rows.squeeze(-1).tolist() == [1.0, 2.0, 0.0, 3.0]  # position t predicts label t + 1
    assert targets.tolist() == [7, 8, 4, 9]
    assert index.tolist() == [[0, 2], [0, 3], [1, 1], [1, 4]]
    assert labels[index[:, 0], index[:, 1]].tolist() == targets.tolist()
    assert int(supervised_token_count(labels)) == 4


def test_shifted_loss_equals_full_sequence_cross_entropy_and_off_by_one_does_not():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 9)
    hidden = torch.randn(2, 6, 4)
    labels = torch.tensor([[-100, -100, -100, 3, 5, 8], [-100, -100, 1, 2, 8, -100]])
    # What the model's own loss does: full logits, shift, mean over supervised tokens.
    full = head(hidden)
    expected = F.cross_entropy(full[:, :-1].reshape(-1, 9), labels[:, 1:].reshape(-1), ignore_index=-100)
    got = lm_loss_sum(hidden, labels, head)
    assert got.tokens == 6
    assert torch.allclose(got.loss_sum / got.tokens, expected, atol=1e-6)
    # The tempting unshifted gather picks the rows AT the label positions: a different number.
    mask = labels != -100
    wrong = F.cross_entropy(head(hidden[mask]), labels[mask])
    assert not torch.allclose(wrong, expected, atol=1e-3)


def test_first_position_label_is_never_a_target():
    hidden = torch.randn(1, 3, 2)
    rows, targets, _ = gather_supervised(hidden, torch.tensor([[5, -100, 6]]))
    assert targets.tolist() == [6] and rows.shape == (1, 2)


def test_weights_of_one_or_confusion_weight_zero_change_nothing():
    logits, targets = _logits(seed=6)
    losses = token_losses(logits, targets, focal_gamma=1.0)
    assert torch.equal(weighted_token_losses(losses, torch.ones(6), 0.7), losses)
    assert torch.equal(weighted_token_losses(losses, torch.full((6,), 4.0), 0.0), losses)
    assert torch.equal(weighted_token_losses(losses, None, 1.0), losses)
    w = torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0, 5.0])
    assert torch.allclose(weighted_token_losses(losses, w, 0.25), (0.75 + 0.25 * w) * losses)
    with pytest.raises(ValueError):
        weighted_token_losses(losses, w, 1.5)


def test_token_weights_follow_label_positions():
    torch.manual_seed(1)
    head = torch.nn.Linear(4, 9)
    hidden = torch.randn(2, 5, 4)
    labels = torch.tensor([[-100, -100, 3, 5, -100], [-100, 1, 2, 8, 8]])
    weights = torch.ones(2, 5)
    weights[1, 3] = 3.0  # the label 8 at (1, 3)
    plain = lm_loss_sum(hidden, labels, head)
    weighted = lm_loss_sum(hidden, labels, head, token_weights=weights, confusion_weight=1.0)
    rows, targets, _ = gather_supervised(hidden, labels)
    per_token = F.cross_entropy(head(rows), targets, reduction="none")
    # Row order: (0,2), (0,3), (1,1), (1,2), (1,3), (1,4); the fifth row carries weight 3.
    assert torch.allclose(weighted.loss_sum - plain.loss_sum, 2.0 * per_token[4], atol=1e-6)
    same = lm_loss_sum(hidden, labels, head, token_weights=torch.ones(2, 5), confusion_weight=1.0)
    assert torch.allclose(same.loss_sum, plain.loss_sum)


def test_step_normalisation_is_independent_of_the_micro_batch_split():
    torch.manual_seed(2)
    head = torch.nn.Linear(4, 9)
    hidden = torch.randn(4, 6, 4)
    labels = torch.full((4, 6), -100)
    labels[0, 5] = 1
    labels[1, 2:] = torch.tensor([3, 4, 5, 6])
    labels[2, 3:5] = torch.tensor([7, 8])
    labels[3, 1:] = torch.tensor([1, 2, 3, 4, 5])
    whole = lm_loss_sum(hidden, labels, head, focal_gamma=2.0, label_smoothing=0.1)
    for split in ([1, 3], [2, 2], [1, 1, 1, 1]):
        chunks = list(zip(hidden.split(split), labels.split(split)))
        step_tokens = sum(supervised_token_count(lab) for _, lab in chunks)
        total = sum(
            lm_loss_sum(h, lab, head, focal_gamma=2.0, label_smoothing=0.1).loss_sum / step_tokens
            for h, lab in chunks
        )
        assert torch.allclose(total, whole.loss_sum / whole.tokens, atol=1e-6)


def test_no_supervised_tokens_gives_a_zero_sum_with_a_gradient():
    head = torch.nn.Linear(4, 9)
    hidden = torch.randn(1, 3, 4, requires_grad=True)
    out = lm_loss_sum(hidden, torch.full((1, 3), -100), head)
    assert out.tokens == 0 and out.loss_sum.item() == 0.0
    out.loss_sum.backward()  # still part of the graph: DDP sees every parameter used
    assert head.weight.grad is not None


def test_docstring_examples_run():
    import doctest

    import banglaocr.train.loss as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
