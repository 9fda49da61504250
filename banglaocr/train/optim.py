"""Optimizers: torch AdamW or bitsandbytes' 8-bit AdamW, with parameter groups.

Groups: no weight decay on biases and norms (decaying them only hurts), and the vision tower /
merger at `train.vision_lr` when set (a randomly initialised or newly unfrozen vision side often
wants a different rate from the language model).

>>> import torch
>>> from banglaocr.config import TrainConfig
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
>>> opt = build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.1))
>>> [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups]
[(0.001, 0.1, 1), (0.001, 0.0, 3)]
"""

from __future__ import annotations

import torch

from banglaocr.config import TrainConfig
from banglaocr.errors import UserError



def is_vision_parameter(name: str) -> bool:
    """Parameters of Qwen3-VL's vision tower and its mergers live under `visual`."""
    return name.startswith("visual.") or ".visual." in name


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters split by (vision or not) x (decay or not); empty groups dropped."""
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        vision = cfg.vision_lr is not None and is_vision_parameter(name)
        groups.setdefault((vision, _no_decay(name, param)), []).append(param)
    result = []
    for (vision, no_decay), params in sorted(groups.items()):
        result.append({"params": params, "lr": cfg.vision_lr if vision else cfg.lr,
                       "weight_decay": 0.0 if no_decay else cfg.weight_decay})
    if not result:
        raise UserError("the model has no trainable parameters")
    return result


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """`adamw` (torch), `adamw8bit` or `paged_adamw8bit` (bitsandbytes) over `parameter_groups`."""
    groups = parameter_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise UserError(f"train.optimizer={cfg.optimizer} needs bitsandbytes ({err})") from None
    optimizer_class = bnb.optim.AdamW8bit if cfg.optimizer == "adamw8bit" else bnb.optim.PagedAdamW8bit
    return optimizer_class(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
