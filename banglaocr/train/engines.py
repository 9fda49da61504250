"""Which distributed engines `banglaocr train` runs under: DDP (one or many machines, through accelerate) and
`model.device_map` in one process. Engines accelerate offers that no test or device log here proves are refused
at start with one line, instead of a run that steps, clips or saves differently from what this loop assumes.
"""

from __future__ import annotations

from banglaocr.errors import UserError


UNPROVEN_ENGINES = {"DEEPSPEED": "DeepSpeed", "FSDP": "FSDP", "MEGATRON_LM": "Megatron-LM"}
"""Engines accelerate offers that this loop is not tested with: they step the optimizer, clip and save
differently (DeepSpeed steps inside backward; FSDP shards the trainable weights and clips per shard)."""


def refuse_unproven_engine(distributed_type: str | None = None) -> None:
    """One clear line (exit 2) instead of a run on an engine nothing here proves: DDP (one or many
    machines) and `model.device_map=auto` are what banglaocr train supports.

    >>> refuse_unproven_engine("MULTI_GPU")
    >>> refuse_unproven_engine("DEEPSPEED")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: DeepSpeed is not supported by banglaocr train (untested with this loop): use DDP - accelerate launch --multi_gpu, on one or several machines (docs/distributed.md) - and model.device_map=auto or model.quantization for a model too big for one GPU
    """
    from accelerate.utils import parse_flag_from_env

    asked = distributed_type
    if asked is None:  # before the Accelerator exists: what `accelerate launch` asked for
        asked = next((name for name, flag in (("DEEPSPEED", "ACCELERATE_USE_DEEPSPEED"), ("FSDP", "ACCELERATE_USE_FSDP"),
                                               ("MEGATRON_LM", "ACCELERATE_USE_MEGATRON_LM"))
                      if parse_flag_from_env(flag)), None)
    if asked in UNPROVEN_ENGINES:
        raise UserError(f"{UNPROVEN_ENGINES[asked]} is not supported by banglaocr train (untested with this loop): "
                        "use DDP - accelerate launch --multi_gpu, on one or several machines (docs/distributed.md) - "
                        "and model.device_map=auto or model.quantization for a model too big for one GPU")
