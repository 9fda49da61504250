"""DDP is real: two CPU processes (gloo) train ONE model - identical weights on both ranks - and that
model equals a one-process run that sees the same micro-batches per optimizer step.

Which comparison is exact: the batch stream hands global micro-batch g to rank g % world. With 2 ranks,
batch size b and no accumulation, optimizer step s uses global micro-batches 2s (rank 0) and 2s + 1
(rank 1). One process with batch size b and `grad_accum_steps=2` uses global micro-batches 2s and 2s + 1
at step s as well - the same samples, padded the same way. (One process with batch size 2b would NOT
see the same batches: `epoch_batches` cuts and length-groups the epoch differently for another batch
size.) The loss is normalised by the supervised tokens of the whole step in both cases, so with
augmentation and dropout off the two runs differ only by float reduction order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import train_helpers as helpers

STEPS = 4
ARGS = ("lora=null", "augment.enabled=false", f"train.max_steps={STEPS}", "train.batch_size=4",
        "train.scheduler=constant", "train.lr=2e-3", "train.save_steps=0", "train.eval_steps=0")
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A 2-process torchrun launch of the tiny recipe; returns (output folder, dump folder)."""
    root = tmp_path_factory.mktemp("ddp")
    return launch_two_ranks(root, *ARGS, "train.grad_accum_steps=1")


def launch_two_ranks(root: Path, *args: str) -> tuple[Path, Path]:
    """torchrun with 2 CPU processes (gloo) on the tiny recipe + `args`: (output folder, per-rank dumps)."""
    out, dump = root / "run", root / "ranks"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**helpers.subprocess_env(), "ACCELERATE_USE_CPU": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(out), str(dump),
               *helpers.overrides(*args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, dump


def test_both_ranks_end_with_identical_weights(two_ranks):
    """Gradients were all-reduced: the two processes hold bit-identical trainable weights."""
    out, dump = two_ranks
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == STEPS
    rank0, rank1 = (helpers.trainable_file(dump / f"rank{r}.safetensors") for r in (0, 1))
    assert helpers.max_abs_diff(rank0, rank1) == 0.0
    # What rank 0 dumped is what the main process saved as the final checkpoint.
    assert helpers.max_abs_diff(rank0, helpers.trainable(out / "checkpoints" / f"step-{STEPS}")) == 0.0


def test_two_ranks_match_one_process_with_the_same_micro_batches(two_ranks, tmp_path):
    """2 ranks x batch 4 == 1 process x batch 4 x grad_accum_steps 2 (same samples per step), up to float
    reduction order; and clearly NOT equal to one process with half the samples per step (so the second
    rank's gradients really reached the update)."""
    out, dump = two_ranks
    ddp = helpers.trainable_file(dump / "rank0.safetensors")

    single = tmp_path / "single"
    helpers.train(single, *ARGS, "train.grad_accum_steps=2")
    same_batches = helpers.trainable(single / "checkpoints" / f"step-{STEPS}")
    assert helpers.max_abs_diff(ddp, same_batches) <= 1e-5

    ddp_losses = [row["loss"] for row in helpers.log_rows(out)]
    single_losses = [row["loss"] for row in helpers.log_rows(single)]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)

    half = tmp_path / "half-the-samples"
    helpers.train(half, *ARGS, "train.grad_accum_steps=1")
    assert helpers.max_abs_diff(ddp, helpers.trainable(half / "checkpoints" / f"step-{STEPS}")) > 1e-3


LORA_ARGS = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.0", "augment.enabled=false", f"train.max_steps={STEPS}",
             "train.batch_size=4", "train.scheduler=constant", "train.lr=2e-3", "train.save_steps=0",
             "train.eval_steps=0")


@pytest.mark.slow  # two processes, over 12 s on 2 cores: in .ci/run's second step
def test_lora_with_gradient_accumulation_matches_one_process(tmp_path):
    """LoRA, 2 ranks x batch 4 x grad_accum_steps 2 (the `no_sync` branch: no all-reduce on the first
    micro-batch of a step) == 1 process x batch 4 x grad_accum_steps 4: the same four global micro-batches
    per optimizer step, up to float reduction order."""
    out, dump = launch_two_ranks(tmp_path, *LORA_ARGS, "train.grad_accum_steps=2")
    rank0, rank1 = (helpers.trainable_file(dump / f"rank{r}.safetensors") for r in (0, 1))
    assert helpers.max_abs_diff(rank0, rank1) == 0.0
    assert all("lora_" in name for name in rank0)

    single = tmp_path / "single"
    helpers.train(single, *LORA_ARGS, "train.grad_accum_steps=4")
    assert helpers.max_abs_diff(rank0, helpers.trainable(single / "checkpoints" / f"step-{STEPS}")) <= 1e-5
    assert [row["loss"] for row in helpers.log_rows(out)] == \
        pytest.approx([row["loss"] for row in helpers.log_rows(single)], rel=1e-5)
    # And the second micro-batch of each rank mattered: accumulation 1 on one process is different.
    fewer = tmp_path / "fewer"
    helpers.train(fewer, *LORA_ARGS, "train.grad_accum_steps=2")
    assert helpers.max_abs_diff(rank0, helpers.trainable(fewer / "checkpoints" / f"step-{STEPS}")) > 1e-4


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_one_process_each_equal_one_machine_two_processes(two_ranks, tmp_path):
    """Multi-node DDP, emulated on localhost: `accelerate launch --num_machines 2 --machine_rank 0|1` (one
    process per "machine", rendezvous over TCP) trains the same weights as 2 processes on one machine."""
    accelerate = Path(sys.executable).with_name("accelerate")
    port = free_port()
    out, dump = tmp_path / "run", tmp_path / "ranks"
    env = {**helpers.subprocess_env(), "ACCELERATE_USE_CPU": "1"}
    machines = []
    for machine_rank in (0, 1):
        command = [str(accelerate), "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank",
                   str(machine_rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                   "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(WORKER), str(out), str(dump), *helpers.overrides(*ARGS, "train.grad_accum_steps=1")]
        log = (tmp_path / f"machine{machine_rank}.log").open("w")
        machines.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes = [process.wait(timeout=400) for process, _ in machines]
    finally:
        for process, log in machines:
            if process.poll() is None:
                process.kill()
            log.close()
    logs = "".join((tmp_path / f"machine{r}.log").read_text()[-2000:] for r in (0, 1))
    assert codes == [0, 0], logs
    single_machine = helpers.trainable_file(two_ranks[1] / "rank0.safetensors")
    for rank in (0, 1):
        assert helpers.max_abs_diff(helpers.trainable_file(dump / f"rank{rank}.safetensors"), single_machine) <= 1e-6
    assert json.loads((out / "summary.json").read_text())["processes"] == 2


def test_shipped_accelerate_configs_are_ddp():
    """The files docs/distributed.md tells users to pass to `accelerate launch --config_file`."""
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parent.parent / "configs"
    loaded = {path.name: load_config_from_file(str(path)) for path in sorted(root.glob("*.yaml"))}
    assert set(loaded) == {"ddp_1x2gpu.yaml", "ddp_multinode.yaml", "ddp_cpu_2proc.yaml"}
    assert all(config.distributed_type.value == "MULTI_GPU" for config in loaded.values())
    assert loaded["ddp_multinode.yaml"].num_machines == 2 and loaded["ddp_cpu_2proc.yaml"].use_cpu
