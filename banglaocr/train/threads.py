"""How many CPU threads torch's math gets in a training process.

torch starts one thread per core. With other work on the machine that is a trap: its threads wait for
each other at every parallel region, and a thread whose core is busy elsewhere holds all the others.
Measured on a 2-core machine (100 steps of recipes/cpu_demo.yaml, training time): 10.4 s quiet with 2
threads; with ONE competing busy process 32 s with 2 threads but 13.7 s with 1; with two busy processes
(rendering workers) 200-300 s with 2 threads, 13.9 s with 1.

So the default is: the CPUs this process may run on (its affinity, which container limits and
`taskset` set), shared by the training processes of this machine, less the CPUs that were busy when
the run started (the 1-minute load average), at least 1. `train.threads` overrides it.

The count also decides the floats: a parallel sum adds its parts in an order that depends on how many
threads share it (a full fine-tune of the tiny model differs in the 7th digit after a few steps with 1
thread or 2). So each checkpoint records the count it was computed with, and a resumed run computes
with that count again - whatever the load, the CPUs or OMP_NUM_THREADS say now - so the continuation
is bit-exact. Only `train.threads` overrides it (the note then says that the continuation may differ
from an uninterrupted run in the last bits).

>>> cpu_threads(requested=None, cpus=2, local_processes=1, load=0.1)
2
>>> cpu_threads(requested=None, cpus=2, local_processes=1, load=1.0)  # one busy program
1
>>> cpu_threads(requested=None, cpus=16, local_processes=2, load=0.0), cpu_threads(requested=3, cpus=2, local_processes=1, load=2.0)
(8, 3)
"""

from __future__ import annotations

import os


def cpu_threads(requested: int | None, cpus: int, local_processes: int, load: float) -> int:
    """The thread count for one process (see the module docstring)."""
    if requested is not None:
        return requested
    idle = cpus - int(round(load))
    return max(1, min(cpus // max(local_processes, 1), idle // max(local_processes, 1)))


def choose_threads(requested: int | None, processes: int, saved: int | None = None) -> tuple[int, str]:
    """The thread count of this training process and the note that says how it was chosen: `requested`
    (train.threads); else - resuming - `saved`, the count the checkpoint was computed with; else an
    explicit OMP_NUM_THREADS (torchrun sets 1 per process: the user's choice too); else `cpu_threads` over
    this machine's CPUs and load, shared by its `processes` (LOCAL_WORLD_SIZE if set).

    >>> choose_threads(3, 1)
    (3, 'torch threads: 3 per process (as set)')
    >>> choose_threads(3, 1, saved=3)
    (3, 'torch threads: 3 per process (as set; the checkpoint was computed with 3 too)')
    """
    if requested is not None:
        return requested, _set_note(requested, saved)
    from_env = os.environ.get("OMP_NUM_THREADS", "")
    requested = int(from_env) if from_env.isdigit() and int(from_env) > 0 else None
    local = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    cpus, load = machine_cpus(), busy_cpus()  # read once: the note says what the choice used
    threads = cpu_threads(requested, cpus, local, load)
    machine = f"{cpus} CPUs, load {load:.1f}{'' if requested is None else ', OMP_NUM_THREADS'}"
    if saved is None:
        return threads, f"torch threads: {threads} per process ({machine})"
    note = (f"torch threads: {saved} per process, as the checkpoint was computed with: the resumed run stays "
            f"bit-exact ({machine}{f' would give {threads}' if threads != saved else ''}; train.threads sets "
            "another count)")
    if saved > max(1, cpus // max(local, 1)):  # exact, but threads wait for each other's CPUs
        note = (f"[yellow]note: {note} - more threads than this process has CPUs, which is slower; "
                f"train.threads={max(1, cpus // max(local, 1))} is faster but not bit-exact[/]")
    return saved, note


def _set_note(threads: int, saved: int | None) -> str:
    """The note of the count train.threads set - with what it means for exactness when a resumed checkpoint
    was computed with another."""
    if saved is None:
        return f"torch threads: {threads} per process (as set)"
    if saved == threads:
        return f"torch threads: {threads} per process (as set; the checkpoint was computed with {saved} too)"
    return (f"[yellow]note: torch threads: {threads} per process (as set); the checkpoint was computed with "
            f"{saved} - parallel sums add in another order, so the continuation may differ from an uninterrupted "
            f"run in the last bits (train.threads=null reuses {saved})[/]")


def machine_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def busy_cpus() -> float:
    """CPUs other programs kept busy over the last minute (the load average; 0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0
