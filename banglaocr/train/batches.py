"""The training data stream: a deterministic, resumable, length-grouped order of micro-batches.

The order of global micro-batches is a pure function of (seed, epoch): batch g of the stream is
always the same samples, so resuming at optimizer step N starts at batch N x accumulation x
processes without replaying (or skipping) any data, and every process takes its own batches
(g = k x processes + rank) - no sampler state to save.

Length grouping: within windows of 64 batches, samples are sorted by label length (a free proxy
for image width, which is what padding costs), cut into batches, and the batches shuffled again,
so a step still sees a mix of lengths over time.

>>> first = list(epoch_batches([3, 1, 2, 5, 4, 6, 1, 2], batch_size=2, seed=0, epoch=0, group_by_length=True))
>>> sorted(i for batch in first for i in batch)
[0, 1, 2, 3, 4, 5, 6, 7]
>>> first == list(epoch_batches([3, 1, 2, 5, 4, 6, 1, 2], batch_size=2, seed=0, epoch=0, group_by_length=True))
True
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Iterator

import torch

from banglaocr.config import ImageConfig
from banglaocr.data.pixels import resize_to_budget
from banglaocr.data.sources import Record, UnreadableImage, open_image

GROUP_WINDOW = 64  # batches per length-sorting window


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool) -> list[list[int]]:
    """All full batches of one epoch (a last partial batch is dropped: equal batches on all ranks)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * GROUP_WINDOW
        grouped = []
        for start in range(0, len(order), window):
            grouped += sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        order = grouped
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    if not batches and order:  # fewer samples than one batch: use what there is
        batches = [order]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def data_fingerprint(records: list[Record]) -> dict:
    """What the data order is a function of, besides the seed: the training records (their order, ids and
    labels). Saved with each checkpoint, so a resume on other data (a folder that changed under the same
    recipe) is noticed instead of silently drawing other batches.

    >>> a = [Record("1", "ক", b""), Record("2", "খ", b"")]
    >>> data_fingerprint(a)["samples"], data_fingerprint(a) == data_fingerprint(a[::-1])
    (2, False)
    """
    digest = hashlib.sha256()
    for record in records:  # ASCII JSON: ids of any bytes (surrogate escapes) hash as well
        digest.update(json.dumps([record.id, record.text]).encode("ascii") + b"\n")
    return {"samples": len(records), "sha256": digest.hexdigest()}


@dataclass
class BatchStream:
    """Yields this process's micro-batches (lists of sample indices) from global batch `start` on."""

    lengths: list[int]
    batch_size: int
    seed: int
    group_by_length: bool
    rank: int = 0
    world_size: int = 1

    def batches_per_epoch(self) -> int:
        return len(epoch_batches(self.lengths, self.batch_size, self.seed, 0, self.group_by_length))

    def iterate(self, start: int) -> Iterator[list[int]]:
        """Micro-batches of this rank, beginning at global micro-batch index `start` (a multiple of world_size)."""
        per_epoch = self.batches_per_epoch()
        if per_epoch == 0:
            raise ValueError("no training batches")
        global_index = start + self.rank
        cached_epoch, cached = -1, []
        while True:
            epoch, offset = divmod(global_index, per_epoch)
            if epoch != cached_epoch:
                cached_epoch = epoch
                cached = epoch_batches(self.lengths, self.batch_size, self.seed, epoch, self.group_by_length)
            yield cached[offset]
            global_index += self.world_size


class WordImages(torch.utils.data.Dataset):
    """Records -> {"image": resized PIL image, "text", "id"}; an unreadable image -> {"error", "id"}.

    Decoding happens here (in DataLoader workers when `data.num_workers > 0`); a failure is passed
    on as an error entry so the loop can count it - never a crash, never a silent drop.
    """

    def __init__(self, records: list[Record], image_cfg: ImageConfig):
        self.records = records
        self.image_cfg = image_cfg

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            image = resize_to_budget(open_image(record), self.image_cfg)
        except UnreadableImage as err:
            return {"error": str(err), "id": record.id}
        return {"image": image, "text": record.text, "id": record.id}


class SkippingCollator:
    """Wraps a `Collator`: drops error entries, reporting them in `batch["skipped"]` [(id, reason)].

    A batch whose every sample failed comes back as {"skipped": [...]} with no tensors.
    """

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, samples: list[dict]) -> dict:
        good = [s for s in samples if "error" not in s]
        skipped = [(s["id"], s["error"]) for s in samples if "error" in s]
        if not good:
            return {"skipped": skipped}
        batch = self.collator(good)
        batch["skipped"] = skipped
        return batch
