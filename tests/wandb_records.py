"""Read the records of an offline W&B run file (`wandb/offline-run-*/run-*.wandb`) without the service.

The file is a 7-byte header (`:W&B`, a 2-byte key, a version byte) followed by a LevelDB-style log:
32 KiB blocks of records, each with a 7-byte header (checksum, 2-byte little-endian length, type:
1 full, 2 first, 3 middle, 4 last); each whole record is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
from pathlib import Path

BLOCK = 32768


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = Path(path).read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        elif kind in (2, 3):
            pending += chunk


def history(path: Path) -> list[dict]:
    """The logged rows: {key: value} per `run.log` call (with `_step`)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def config(path: Path) -> dict:
    """The run's config (sent with the run record, and in later config records)."""
    found = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        found.update({item.key: json.loads(item.value_json) for item in updates})
    return found
