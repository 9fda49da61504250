"""Focal + confusion-weighted cross-entropy on supervised positions only (pure functions).

Only the answer tokens (and the closing `<|im_end|>`) carry labels; everything else is -100.
The hidden state at position t predicts the token at t + 1, so the rows to keep are
`hidden[:, :-1]` where `labels[:, 1:] != -100` - gathered BEFORE the lm_head, so the logits
are [supervised tokens, vocab] instead of [batch, sequence, vocab] (7x faster and a fraction
of the memory with Qwen's 151k vocabulary).

Per supervised token i with target y_i and p_i = softmax(logits_i)[y_i]:

    ce_i     = (1 - eps) * -log p_i + eps * mean_v(-log softmax(logits_i)_v)   (= F.cross_entropy)
    focal_i  = (1 - p_i) ** gamma * ce_i                                       (p from raw logits)
    loss_i   = ((1 - c) + c * w_i) * focal_i                                   (w_i confusion weight)

Normalisation contract: `lm_loss_sum` returns the SUM of loss_i and the number of supervised
tokens. The training loop divides by the number of supervised tokens of the WHOLE optimizer
step - all micro-batches, all ranks - counted before the step (`supervised_token_count`,
then an all-reduce). Dividing each micro-batch by its own count instead would give a short
word's tokens more weight than a long word's, and the result would depend on how the batch
was split. Under DDP the gradients are AVERAGED over ranks, so each rank scales by
`world_size / global_tokens`; with one process that is `1 / global_tokens`:

>>> import torch
>>> _ = torch.manual_seed(0)
>>> head = torch.nn.Linear(4, 7, bias=False)
>>> hidden = torch.randn(2, 5, 4)
>>> labels = torch.tensor([[-100, -100, 3, 6, -100], [-100, 2, 5, 1, 6]])
>>> micro_batches = [(hidden[:1], labels[:1]), (hidden[1:], labels[1:])]
>>> step_tokens = sum(supervised_token_count(lab) for _, lab in micro_batches)  # all-reduce here
>>> world_size = 1
>>> total = sum(lm_loss_sum(h, lab, head).loss_sum * world_size / step_tokens for h, lab in micro_batches)
>>> whole = lm_loss_sum(hidden, labels, head)
>>> bool(torch.allclose(total, whole.loss_sum / whole.tokens)), int(step_tokens), whole.tokens
(True, 6, 6)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from banglaocr.confusion import token_weights
from banglaocr.data.collate import IGNORE_INDEX



class LossSum(NamedTuple):
    """`loss_sum`: summed token losses (a scalar tensor); `tokens`: how many were summed."""

    loss_sum: torch.Tensor
    tokens: int


def supervised_token_count(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Number of supervised next-token targets in `labels` [B, T], as a 0-dim tensor.

    Kept on the labels' device so the loop can add up the micro-batches and all-reduce over
    ranks without a CPU-GPU sync per micro-batch (one `.item()` at the end, if at all).

    >>> int(supervised_token_count(torch.tensor([[5, -100, 3, 4], [-100, -100, -100, 9]])))
    3
    """
    # Position 0 is never a target: nothing before it predicts it.
    return (labels[:, 1:] != ignore_index).sum()


def gather_supervised(
    hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden rows that predict a supervised token, their targets, and where each target sits.

    `hidden` [B, T, H] (the model body's output, final norm applied), `labels` [B, T].
    Returns `rows` [N, H] = `hidden[:, :-1][labels[:, 1:] != ignore]` (on `hidden`'s device),
    `targets` [N] = `labels[:, 1:][labels[:, 1:] != ignore]` and `index` [N, 2] (long): the (batch,
    position in labels) of each target (both on `labels`' device), so per-token weights laid out like
    `labels` line up with the rows: `weights[index[:, 0], index[:, 1]]`.

    The two may sit on different devices: under `model.device_map` the body's output comes back on the
    device of its last layers, while labels are where the inputs went. The positions are found where
    the labels are (a data-dependent `nonzero`) and only the row indices travel to `hidden`.
    One `nonzero` (a CPU-GPU sync: the number of rows is data-dependent) replaces the two
    boolean-mask indexings, each of which would sync as well.

    >>> hidden = torch.arange(6.0).reshape(1, 3, 2)
    >>> rows, targets, index = gather_supervised(hidden, torch.tensor([[-100, 7, 8]]))
    >>> rows.tolist(), targets.tolist(), index.tolist()
    ([[0.0, 1.0], [2.0, 3.0]], [7, 8], [[0, 1], [0, 2]])
    """
    if hidden.shape[:2] != labels.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree on [B, T]")
    batch, position = (labels[:, 1:] != ignore_index).nonzero(as_tuple=True)
    targets = labels[batch, position + 1]  # position t predicts label t + 1
    rows = hidden[batch.to(hidden.device, non_blocking=True), position.to(hidden.device, non_blocking=True)]
    return rows, targets, torch.stack((batch, position + 1), dim=1)


# Rows of logits upcast to float32 at a time in `logit_row_stats`: ~8 MB of temporaries, so a
# 151k-entry vocabulary never needs a float32 copy of all [N, V] logits.
ROW_STATS_CHUNK_ELEMENTS = 1 << 21


def logit_row_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of `logits` [N, V]: (logsumexp, the target's logit, the mean logit), float32 (float64 stays).

    Everything a (smoothed, focal) cross-entropy needs: log p_target = target - logsumexp and
    mean_v log softmax_v = mean - logsumexp. The gradient flows back into `logits` directly
    (d logsumexp / d logits = softmax, computed in float32 row chunks and written in the logits'
    dtype), so neither the forward nor the backward builds float32 [N, V] log-probabilities, a
    zero-filled [N, V] gradient for the gather, or an extra dtype copy of the logits - with
    Qwen's 151k vocabulary those were a tenth of a CPU training step.

    >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> lse, target, mean = logit_row_stats(logits, torch.tensor([0, 2]))
    >>> bool(torch.allclose(target - lse, torch.log_softmax(logits, -1)[[0, 1], [0, 2]]))
    True
    """
    return _LogitRowStats.apply(logits, targets)


def _row_chunk(vocab: int) -> int:
    return max(1, ROW_STATS_CHUNK_ELEMENTS // max(1, vocab))


class _LogitRowStats(torch.autograd.Function):
    """`logit_row_stats` with a backward that builds the logits' gradient row chunk by row chunk."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor):
        compute = torch.promote_types(logits.dtype, torch.float32)
        rows = logits.shape[0]
        log_sum_exp = torch.empty(rows, dtype=compute, device=logits.device)
        mean = torch.empty(rows, dtype=compute, device=logits.device)
        step = _row_chunk(logits.shape[1])
        for start in range(0, rows, step):
            chunk = logits[start:start + step].to(compute)
            log_sum_exp[start:start + step] = torch.logsumexp(chunk, dim=-1)
            mean[start:start + step] = chunk.mean(dim=-1)
        target = logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(compute)
        ctx.save_for_backward(logits, targets, log_sum_exp)
        ctx.mark_non_differentiable(targets)
        return log_sum_exp, target, mean

    @staticmethod
    def backward(ctx, grad_lse, grad_target, grad_mean):
        # An output that took no part in the loss arrives as zeros (autograd materialises them).
        logits, targets, log_sum_exp = ctx.saved_tensors
        rows, vocab = logits.shape
        grad = torch.empty_like(logits)
        step = _row_chunk(vocab)
        for start in range(0, rows, step):
            end = start + step
            chunk = logits[start:end].to(log_sum_exp.dtype)
            # d logsumexp / d z = softmax(z); d mean / d z = 1 / V; d z_target / d z = one-hot.
            part = torch.exp(chunk - log_sum_exp[start:end, None]).mul_(grad_lse[start:end, None])
            part.add_(grad_mean[start:end, None] / vocab)
            part.scatter_add_(1, targets[start:end, None], grad_target[start:end, None])
            grad[start:end] = part
        return grad, None


def token_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    focal_gamma: float = 0.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-token focal, label-smoothed cross-entropy: `(1 - p_t) ** gamma * ce_smooth` -> [N].

    `logits` [N, V] at supervised positions only, `targets` [N]. p_t is the model's
    probability of the target under the raw logits - the smoothed CE is not a probability and
    exp(-ce_smooth) would under-state confidence. Works from three numbers per row
    (`logit_row_stats`: logsumexp, target logit, mean logit, in float32 - fp16 overflows and
    bf16 has 3 significant digits), so no [N, V] log-probabilities are ever stored.
    With gamma = 0 this is exactly `F.cross_entropy(logits, targets,
    label_smoothing=label_smoothing, reduction="none")`.

    >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> targets = torch.tensor([0, 2])
    >>> bool(torch.allclose(token_losses(logits, targets), F.cross_entropy(logits, targets, reduction="none")))
    True
    >>> token_losses(logits, targets, focal_gamma=2.0) < token_losses(logits, targets)
    tensor([True, True])
    """
    if focal_gamma < 0:
        raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    log_sum_exp, target_logit, mean_logit = logit_row_stats(logits, targets)
    target_log_prob = target_logit - log_sum_exp
    loss = -target_log_prob
    if label_smoothing > 0:
        # Smoothing spreads eps uniformly over ALL classes (the target included), as torch does:
        # mean_v log softmax_v = mean_v logit_v - logsumexp.
        loss = (1.0 - label_smoothing) * loss - label_smoothing * (mean_logit - log_sum_exp)
    if focal_gamma > 0:
        # 1 - p computed as -expm1(log p): accurate when p -> 1, where 1 - exp(log p) cancels.
        # At p == 1 exactly (confident fp32 logits), (1 - p) ** gamma has an infinite derivative
        # for gamma < 1 and inf * 0 is NaN; clamping to the smallest normal float keeps the
        # power's derivative finite, and the clamp passes no gradient below its bound.
        one_minus_p = (-torch.expm1(target_log_prob)).clamp_min(torch.finfo(log_sum_exp.dtype).tiny)
        loss = one_minus_p.pow(focal_gamma) * loss
    return loss


def weighted_token_losses(
    per_token: torch.Tensor, token_weights: torch.Tensor | None, confusion_weight: float
) -> torch.Tensor:
    """Blend per-token losses with confusion weights: `((1 - c) + c * w_i) * loss_i` -> [N].

    c = `confusion_weight` in [0, 1]: 0 ignores the weights, 1 applies them fully. Weights of
    1.0 (unconfused characters) leave a token's loss unchanged for every c.

    >>> weighted_token_losses(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]), 0.5)
    tensor([1., 2.])
    """
    if not 0.0 <= confusion_weight <= 1.0:
        raise ValueError(f"confusion_weight must be in [0, 1], got {confusion_weight}")
    if token_weights is None or confusion_weight == 0.0:
        return per_token
    if token_weights.shape != per_token.shape:
        raise ValueError(
            f"token_weights {tuple(token_weights.shape)} must match the losses {tuple(per_token.shape)}"
        )
    scale = (1.0 - confusion_weight) + confusion_weight * token_weights.to(per_token.dtype)
    return scale * per_token


def lm_loss_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: Callable[[torch.Tensor], torch.Tensor],
    *,
    token_weights: torch.Tensor | None = None,
    confusion_weight: float = 0.0,
    focal_gamma: float = 0.0,
    label_smoothing: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> LossSum:
    """Summed loss over the supervised tokens of one micro-batch, and their count.

    `hidden` [B, T, H] from the model body, `labels` [B, T], `lm_head` maps [N, H] -> [N, V]
    (applied to the supervised rows only), `token_weights` [B, T] laid out like `labels`
    (the weight of the token each label position holds; other positions are ignored).
    Divide by the optimizer step's token count (module docstring) - not by `tokens`.

    Devices (`model.device_map`): `hidden` may come back on another device than `labels`, and
    `lm_head` may run on a third (a tied head sits with the input embedding). The rows are gathered
    where `hidden` is, the per-token losses computed where the logits are (targets and weights go
    there), and the sum comes back on `labels`' device - where the loop adds up its step.
    """
    rows, targets, index = gather_supervised(hidden, labels, ignore_index)
    logits = lm_head(rows)
    per_token = token_losses(logits, targets.to(logits.device, non_blocking=True), focal_gamma, label_smoothing)
    weights = None if token_weights is None else token_weights[index[:, 0], index[:, 1]].to(logits.device)
    per_token = weighted_token_losses(per_token, weights, confusion_weight)
    return LossSum(per_token.sum().to(labels.device), int(targets.numel()))


def batch_token_weights(batch: dict, char_weights: dict[str, float] | None) -> torch.Tensor | None:
    """[B, T] weights laid out like `batch["labels"]`: each supervised token gets its characters' weight
    (`confusion.token_weights` over the collator's `answer_offsets`); None without a weight table.

    >>> labels = torch.tensor([[-100, 5, 6, 7]])
    >>> batch_token_weights({"labels": labels, "texts": ["কল"], "answer_offsets": [[(0, 1), (1, 2), (0, 0)]]},
    ...                     {"ক": 2.0, "ল": 1.0}).tolist()
    [[1.0, 2.0, 1.0, 1.0]]
    """
    if not char_weights:
        return None
    labels = batch["labels"]
    weights = torch.ones(labels.shape, dtype=torch.float32)
    for row, (text, offsets) in enumerate(zip(batch["texts"], batch["answer_offsets"])):
        positions = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        values = token_weights(text, offsets, char_weights)
        if len(values) != len(positions):  # the collator's contract; a mismatch would misalign weights
            raise RuntimeError(f"{len(values)} token weights for {len(positions)} supervised tokens")
        weights[row, positions] = torch.tensor(values, dtype=torch.float32)
    return weights
