"""The training data stream: epochs, determinism, exact resume positions, rank partition - and the real
collate path, where no training sample may end up without a supervised token."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

import train_helpers as helpers
from banglaocr.train.batches import GROUP_WINDOW, BatchStream, SkippingCollator, WordImages, epoch_batches

_rng = random.Random(7)
LENGTHS = [_rng.randint(1, 12) for _ in range(203)]  # 203: not a multiple of any batch size used


def take(iterator, n: int) -> list[list[int]]:
    return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize("group_by_length", [True, False])
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_an_epoch_uses_each_sample_at_most_once_in_full_batches(batch_size, group_by_length):
    """Every batch is full, no sample repeats within an epoch, and only the remainder (< batch_size) is left out."""
    batches = epoch_batches(LENGTHS, batch_size, seed=3, epoch=0, group_by_length=group_by_length)
    flat = [i for batch in batches for i in batch]
    assert all(len(batch) == batch_size for batch in batches)
    assert len(flat) == len(set(flat)) and set(flat) <= set(range(len(LENGTHS)))
    assert len(LENGTHS) - len(flat) == len(LENGTHS) % batch_size


@pytest.mark.parametrize("group_by_length", [True, False])
def test_order_is_a_function_of_seed_and_epoch(group_by_length):
    """Same (seed, epoch) -> the same batches; another epoch or another seed -> another order."""
    def order(seed, epoch):
        return epoch_batches(LENGTHS, 4, seed=seed, epoch=epoch, group_by_length=group_by_length)

    assert order(0, 0) == order(0, 0)
    assert order(0, 1) == order(0, 1)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_length_grouping_puts_similar_lengths_together():
    """Grouped batches have a much smaller spread of label lengths than random ones (less padding)."""
    rng = random.Random(1)
    lengths = [rng.randint(1, 30) for _ in range(4 * GROUP_WINDOW)]

    def spread(group_by_length):
        batches = epoch_batches(lengths, 4, seed=0, epoch=0, group_by_length=group_by_length)
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    assert spread(True) < spread(False) / 4


def test_fewer_samples_than_a_batch_still_train():
    """A data set smaller than one batch gives one batch of everything (never an empty epoch)."""
    assert sorted(epoch_batches([3, 1, 2], 8, seed=0, epoch=0, group_by_length=True)[0]) == [0, 1, 2]
    assert BatchStream([3, 1, 2], 8, seed=0, group_by_length=False).batches_per_epoch() == 1


@pytest.mark.parametrize("start", [0, 1, 5, 49, 50, 51, 123])
def test_resuming_at_any_batch_replays_nothing_and_skips_nothing(start):
    """iterate(start) is exactly the tail of iterate(0), across epoch boundaries (50 batches per epoch)."""
    stream = BatchStream(LENGTHS, 4, seed=5, group_by_length=True)
    assert stream.batches_per_epoch() == 50
    assert take(stream.iterate(start), 60) == take(stream.iterate(0), start + 60)[start:]


def test_the_stream_walks_through_successive_epochs():
    """Batch e x per_epoch + i of the stream is batch i of epoch e."""
    stream = BatchStream(LENGTHS, 4, seed=5, group_by_length=False)
    stream_batches = take(stream.iterate(0), 150)
    for epoch in range(3):
        assert stream_batches[epoch * 50:(epoch + 1) * 50] == epoch_batches(LENGTHS, 4, 5, epoch, False)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_partition_the_global_stream(world_size):
    """Rank r takes global batches r, r + world, ...: interleaving the ranks gives back the one-process
    stream, and a resume position (a multiple of world_size) keeps that true."""
    single = take(BatchStream(LENGTHS, 4, seed=2, group_by_length=True).iterate(0), 120)
    for start in (0, world_size * 7):
        per_rank = [take(BatchStream(LENGTHS, 4, seed=2, group_by_length=True, rank=r,
                                     world_size=world_size).iterate(start), 120 // world_size - 7)
                    for r in range(world_size)]
        interleaved = [batch for step in zip(*per_rank) for batch in step]
        assert interleaved == single[start:start + len(interleaved)]


def test_ranks_never_share_a_sample_within_an_epoch():
    """Over one epoch the two ranks' batches are disjoint."""
    per_rank = [take(BatchStream(LENGTHS, 4, seed=2, group_by_length=True, rank=r, world_size=2).iterate(0), 25)
                for r in (0, 1)]
    samples = [{i for batch in batches for i in batch} for batches in per_rank]
    assert not samples[0] & samples[1]
    assert len(samples[0]) == len(samples[1]) == 100


# --------------------------------------------------------------------------- the real collate path


def _training_batches(records, tokenizer, data_cfg, batch_size=8):
    """The loop's CPU-side path (decode + resize in WordImages, SkippingCollator(Collator)) over all records."""
    from banglaocr.data.collate import Collator

    order = list(range(len(records)))
    loader = torch.utils.data.DataLoader(
        WordImages(records, data_cfg.image),
        batch_sampler=[order[i:i + batch_size] for i in range(0, len(order), batch_size)],
        collate_fn=SkippingCollator(Collator(tokenizer, data_cfg.prompt, train=True)))
    yield from loader


@pytest.mark.parametrize("tokenizer_name", ["char_tokenizer", "qwen_tokenizer"])
def test_every_training_sample_is_supervised_up_to_im_end(tokenizer_name, request):
    """Through WordImages + SkippingCollator(Collator) over the whole tiny training set, every row keeps at
    least one supervised position after the causal shift, and the supervised tokens are the answer
    (equal to the label under the one normaliser that labels and predictions share) then <|im_end|>."""
    from banglaocr.data.collate import IGNORE_INDEX
    from banglaocr.data.sources import load_splits
    from banglaocr.model.tokenizers import special_token_ids
    from banglaocr.text import normalize

    tokenizer = request.getfixturevalue(tokenizer_name)
    data_cfg = dataclasses.replace(helpers.tiny_recipe().data, source=str(helpers.synth_dir()))
    splits = load_splits(data_cfg)
    rows = 0
    for batch in _training_batches(splits.train, tokenizer, data_cfg):
        assert batch["skipped"] == []
        labels = batch["labels"]
        shifted = labels[:, 1:] != IGNORE_INDEX
        assert bool(shifted.any(dim=1).all()), "a row has no supervised token"
        for row, text in enumerate(batch["texts"]):
            supervised = labels[row][labels[row] != IGNORE_INDEX].tolist()
            assert supervised[-1] == special_token_ids(tokenizer)["im_end"]
            assert normalize(tokenizer.decode(supervised[:-1])) == text
            rows += 1
    assert rows == len(splits.train) > 0
