"""TensorBoard scalars of a training run (`train.report_to` has tensorboard): `<output_dir>/tensorboard/`.

Written here, in the calling thread, rather than through accelerate's tracker: that one writes through
tensorboard's background thread, where a full disk or a vanished folder prints the thread's traceback
and comes back later as an exception at an unrelated call. Here each log row is one append and one flush
of an event file (the format tensorboard's own writer produces: a version event, then one `Summary` of
`simple_value`s per row), so a write that fails is `writing`'s one line naming the file, at the row that
failed. A resumed run starts a new event file beside the old ones (tensorboard reads them all).

>>> import tempfile, pathlib
>>> log = TensorBoardLog(pathlib.Path(tempfile.mkdtemp()) / "tensorboard")  # in an existing run folder
>>> log.write({"loss": 1.5, "lr": 0.01}, step=3); log.close()
>>> [p.name.startswith("events.out.tfevents.") for p in log.folder.iterdir()]
[True]
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from banglaocr.errors import writing


class TensorBoardLog:
    """One event file of scalars, opened at the first row; `close()` at the end of the run."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path: Path | None = None
        self._handle = None

    def _open(self) -> None:
        from tensorboard.compat.proto import event_pb2

        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self.path = self.folder / name
        with writing(self.path):
            self.folder.mkdir(exist_ok=True)  # never the run folder above it: one that vanished stays gone
            self._handle = self.path.open("ab")
        self._append(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, values: dict[str, float], step: int) -> None:
        """One row: each number as a scalar `tag` at `step`."""
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if self._handle is None:
            self._open()
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                                             for tag, value in values.items()])
        self._append(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def _append(self, event) -> None:
        """One record (tensorboard's framing: length, its CRC, the event, its CRC), flushed to the file."""
        import struct

        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        record = header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
        with writing(self.path):
            self._handle.write(record)
            self._handle.flush()

    def close(self) -> None:
        """Close the event file (every row is already flushed: nothing is left to fail here)."""
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:  # only an unflushed rest could fail, and write() flushes every row
                pass
            self._handle = None
