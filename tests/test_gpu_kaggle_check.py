"""benchmarks/gpu_kaggle_check.py: its CPU smoke mode runs `banglaocr train` end to end, and its FLOPs / MFU
arithmetic matches numbers worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is run from a checkout, not installed

from benchmarks.gpu_kaggle_check import (KEYS, Counts, Params, mfu, model_flops, peak_tflops,  # noqa: E402
                                         steady_rate)
from banglaocr.config import TinyModelSpec  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_kaggle_check.py"


def test_cpu_smoke_run_trains_with_the_real_loop_and_reports_every_key():
    peak = 0.05  # TFLOP/s, given by hand: a CPU has no entry in the table
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--peak-tflops", str(peak)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result) == list(KEYS)
    assert result["precision"] == "fp32" and result["device"] == "cpu" and result["processes"] == 1
    assert result["device_map"] is None and result["two_devices"] is None
    assert (result["batch_size_per_process"], result["grad_accum_steps"], result["steps"]) == (4, 2, 6)
    assert result["samples_per_s"] > 0 and result["samples_per_s_basis"].startswith("steps 3-6")
    assert result["nonfinite_steps"] == 0
    assert result["peak_gpu_memory_gib"] is None and result["fits_t4"] is None  # no GPU
    for key in ("tokens_per_sample", "supervised_tokens_per_sample", "patches_per_sample"):
        assert result[key] > 0, key
    assert result["padded_tokens_per_sample"] >= result["tokens_per_sample"]
    # LoRA r8 on the tiny model's 7 linear layers per decoder layer: r x (in + out) each.
    spec, r = TinyModelSpec(), 8
    hidden, kv = spec.hidden_size, spec.hidden_size // spec.num_heads * spec.num_kv_heads
    per_layer = r * (4 * hidden + 2 * (hidden + kv) + 3 * (hidden + spec.intermediate_size))
    assert result["params"]["lora"] == per_layer * spec.num_layers
    assert result["params"]["lora_vision"] == 0
    assert result["peak_tflops"] == peak
    expected = result["model_tflops_per_step"] / (result["step_s"] * peak)
    assert result["mfu"] == pytest.approx(expected, rel=0.05)


@pytest.mark.slow  # over 15 s on 2 cores: in .ci/run's second step, with the other long runs
def test_cpu_smoke_run_of_the_device_map_mode_trains_with_offloaded_layers(tmp_path):
    """--device-map: one process, model.device_map=auto with max_memory (on the CPU: what does not fit 3 MB of
    the 11 MB model goes to disk) - the real loop trains through accelerate's offload hooks and the line says how
    it was split."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--device-map",
                           "--cpu-memory", "3MB", "--peak-tflops", "0.05", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result) == list(KEYS) and result["device_map"] == "[cpu=3MB]"
    assert result["steps"] == 6 and result["nonfinite_steps"] == 0 and result["samples_per_s"] > 0
    log = tmp_path / "fp32-device-map.log"
    text = " ".join(log.read_text(encoding="utf-8").split())  # the placement line, however the console wrapped it
    placement = text[text.index("device map: "):]
    assert placement.startswith("device map: cpu: model.visual") and "| disk (offloaded):" in placement
    assert result["params"]["lora"] > 0
    # The in-process two-device check: on the CPU both halves are the CPU (its plumbing, not the GPU proof).
    assert result["two_devices"]["ok"] and result["two_devices"]["tail_device"] == "cpu"
    assert result["two_devices"]["loss_device"] == "cpu" and result["two_devices"]["grad_max_diff"] == 0.0


def test_model_flops_by_hand():
    params = Params(lm=100, lm_head=10, vision=20, vision_merger=8, lora=5)
    counts = Counts(samples=2, tokens=7, supervised=3, patches=16)
    # 4*100*7 + 4*10*3 + 6*5*7 + 2*20*16 + 2*8*16/4 = 2800 + 120 + 210 + 640 + 64
    assert model_flops(params, counts) == 3834.0
    # adapters in the vision tower: its backward to the activations (640 + 64) and 6*3*16 more
    assert model_flops(Params(100, 10, 20, 8, 5, lora_vision=3), counts) == 3834.0 + 704 + 288


def test_mfu_by_hand():
    # 6.5 TFLOP in 0.5 s on a 65 TFLOP/s device: 13 of 65 = 0.2; on two devices half that.
    assert mfu(6.5e12, 0.5, 65.0) == pytest.approx(0.2)
    assert mfu(6.5e12, 0.5, 65.0, devices=2) == pytest.approx(0.1)


def test_peak_table_by_device_name():
    assert peak_tflops("Tesla T4", "fp16") == 65.0
    assert peak_tflops("Tesla T4", "bf16") is None
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") is None
    assert peak_tflops("NVIDIA H200", "fp16") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert peak_tflops("NVIDIA L4", "bf16") == 121.0
    assert peak_tflops("NVIDIA L40S", "bf16") is None
    assert peak_tflops("Tesla V100-SXM2-16GB", "fp16") == 125.0
    assert peak_tflops("cpu", "fp32") is None


def test_steady_rate_leaves_out_the_first_log_window():
    rows = [{"step": 5, "samples_per_s": 10.0}, {"step": 10, "samples_per_s": 20.0},
            {"step": 10, "val_cer": 0.5}, {"step": 15, "samples_per_s": 40.0}]
    # steps 6-15 at 32 samples per step: 160 samples in 8 s, then 160 in 4 s -> 320 / 12
    rate, first, basis = steady_rate(rows, 32)
    assert rate == pytest.approx(320 / 12) and first == 6 and basis.startswith("steps 6-15")
    assert steady_rate(rows[:1], 32) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_exits_2_with_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: no CUDA device")
