"""Mixed precision, written out: autocast around every forward and, under fp16, a GradScaler - the same code
on a GPU and on the CPU.

accelerate's own fp16 runs only on accelerators: on the CPU it silently trains in float32 with no
GradScaler, so the fp16 path (the one a Kaggle T4 takes) could never be exercised before it meets a GPU.
Here it is torch's public API directly - `torch.autocast(device, dtype)` and `torch.amp.GradScaler(device)`,
what accelerate does on a GPU - so the skipped step, the halved scale and its exact resume are tested on
the CPU (torch >= 2.4 runs fp16 autocast and GradScaler there). accelerate still does devices, DDP and
collectives; it is built with `mixed_precision="no"`.

fp16 needs the scaler because small gradients underflow fp16: the loss is multiplied by the scale before
`backward`, gradients are divided by it before clipping, and a step whose gradients overflowed (inf/NaN)
is skipped while the scale halves; 2000 good steps in a row double it again. A scale that keeps falling
means the FORWARD overflows (Qwen3-VL's residual stream in fp16 weights), which no scale can fix:
`model.dtype=float32` keeps weights and residual stream in float32 and only the matmuls in fp16.

>>> precision = mixed_precision("fp16", torch.device("cpu"))
>>> precision.scaler is not None, precision.loss_scale()
(True, 65536.0)
>>> mixed_precision("fp32", torch.device("cpu")).loss_scale() is None
True
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from banglaocr.errors import UserError

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

LOW_LOSS_SCALE = 128.0
"""Below this fp16 loss scale the run warns: from the initial 65,536 that is nine halvings more than the
scale grew back - gradients (or the forward) keep overflowing."""

SKIPPED_SHARE_WARNING = 0.05
"""A log window with more than this share of skipped (non-finite) steps gets a warning line."""

FP16_FALLBACK = ("model.dtype=float32 (float32 weights and residual stream, fp16 matmuls under autocast) or "
                 "a lower train.lr; bf16 on GPUs that have it (not a T4)")
"""What to try when fp16 overflows - the settings that exist on a T4."""


@dataclass
class MixedPrecision:
    """The run's precision: `name` (fp32 | bf16 | fp16), the device type autocast runs on, the GradScaler (fp16)."""

    name: str
    device_type: str
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        """The context every forward runs in (nothing under fp32)."""
        if self.name not in _AUTOCAST_DTYPES:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_AUTOCAST_DTYPES[self.name])

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call backward on (multiplied by the fp16 loss scale)."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale(self, optimizer) -> None:
        """Divide the gradients by the loss scale (before clipping: the clip threshold is in true units)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer, grad_norm: float) -> bool:
        """Update the weights unless the gradient is not finite; returns whether the update was SKIPPED.
        Under fp16 the GradScaler decides (and halves its scale on a skip)."""
        if self.scaler is None:
            if not math.isfinite(grad_norm):
                return True
            optimizer.step()
            return False
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)  # skips optimizer.step() when the unscaled gradients hold inf/NaN
        self.scaler.update()
        return self.scaler.get_scale() < before

    def loss_scale(self) -> float | None:
        """The fp16 loss scale now (None without a GradScaler)."""
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def state_dict(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def mixed_precision(name: str, device: torch.device) -> MixedPrecision:
    """The precision `train.precision` asks for on `device`, refusing what the device cannot do.

    >>> mixed_precision("bf16", torch.device("cpu")).name
    'bf16'
    """
    if name not in ("fp32", "bf16", "fp16"):
        raise UserError(f"train.precision must be one of fp32, bf16, fp16, got {name!r}")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError("this GPU has no bf16 (e.g. a T4): use train.precision=fp16")
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return MixedPrecision(name=name, device_type=device.type, scaler=scaler)


def stop_message(step: int, in_a_row: int, precision: str) -> str:
    """The line a run stops with after `in_a_row` non-finite steps.

    >>> stop_message(40, 20, "fp16").split(";")[0]
    'stopped at step 40: 20 optimizer steps in a row had non-finite gradients'
    """
    cause = (f"fp16 overflow - try {FP16_FALLBACK}" if precision == "fp16"
             else "try a lower train.lr or train.max_grad_norm, or check the data")
    return f"stopped at step {step}: {in_a_row} optimizer steps in a row had non-finite gradients; {cause}"


def window_warnings(precision: MixedPrecision, step: int, steps: int, skipped: int,
                    scale_at_start: float | None) -> list[str]:
    """Warning lines for one log window of `steps` optimizer steps of which `skipped` were skipped.

    >>> window_warnings(mixed_precision("fp32", torch.device("cpu")), 100, 10, 2, None)[0][:47]
    'step 100: 2 of the last 10 steps were skipped ('
    """
    said = []
    if steps and skipped / steps > SKIPPED_SHARE_WARNING:
        why = "fp16 overflow" if precision.name == "fp16" else "non-finite gradients"
        said.append(f"step {step}: {skipped} of the last {steps} steps were skipped ({why}); "
                    + (f"if it goes on, try {FP16_FALLBACK}" if precision.name == "fp16"
                       else "if it goes on, lower train.lr or check the data"))
    scale = precision.loss_scale()
    if scale is not None and scale < LOW_LOSS_SCALE and (scale_at_start is None or scale < scale_at_start):
        said.append(f"step {step}: the fp16 loss scale fell to {scale:g} (from 65536): gradients or the forward "
                    f"keep overflowing fp16, which a smaller scale cannot fix; try {FP16_FALLBACK}")
    return said


def refuse_half_precision_trainables(model: torch.nn.Module, precision: str) -> None:
    """fp16 mixed precision needs float32 trainable weights: GradScaler cannot unscale float16 gradients."""
    if precision == "fp16" and any(p.requires_grad and p.dtype == torch.float16 for p in model.parameters()):
        raise UserError("train.precision=fp16 needs float32 trainable weights, but model.dtype=float16 makes "
                        "them float16 (a full fine-tune); use model.dtype: auto (float32 weights, fp16 compute)")
