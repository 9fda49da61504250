"""The module DDP wraps (and `model.device_map` splits): model body -> lm_head at supervised positions -> loss sum.

>>> import torch
>>> from banglaocr.config import ModelConfig, LoraConfig, TinyModelSpec
>>> from banglaocr.model.factory import load_model
>>> _ = torch.manual_seed(0)
>>> loaded = load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=TinyModelSpec(hidden_size=64, num_layers=2)),
...                     LoraConfig(r=4))
>>> isinstance(SupervisedLossModel(loaded.model, focal_gamma=0.0, label_smoothing=0.0), torch.nn.Module)
True
"""

from __future__ import annotations

import torch

from banglaocr.model.factory import core_model
from banglaocr.model.placement import execution_device
from banglaocr.train.loss import lm_loss_sum


def on_its_device(head: torch.nn.Module):
    """`head` as a function that first moves its input to where `head` runs (`placement.execution_device`):
    under `model.device_map` the rows come from the device of the last layers, and a head without
    accelerate's hook would not move them itself.

    >>> head = torch.nn.Linear(2, 3)
    >>> on_its_device(head)(torch.ones(4, 2)).shape
    torch.Size([4, 3])
    """
    device = execution_device(head)
    return lambda rows: head(rows.to(device, non_blocking=True))


class SupervisedLossModel(torch.nn.Module):
    """The module DDP wraps: model body -> hidden states -> lm_head at supervised positions -> loss sum.

    The model never computes its own loss (no `labels` go in), and full-vocabulary logits are
    never built for the prompt and image positions: memory is O(answer tokens x vocab).
    `core.model` and `core.lm_head` are called below the top-level module, where accelerate's hooks
    (`model.device_map`) would move outputs back to the input device: `lm_loss_sum` takes each tensor
    to the device it needs and returns the sum on `labels`' device (the model's input device).
    """
    def __init__(self, model: torch.nn.Module, focal_gamma: float, label_smoothing: float):
        super().__init__()
        self.model = model
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing

    def forward(self, inputs: dict, labels: torch.Tensor, token_weights: torch.Tensor | None = None,
                confusion_weight: float = 0.0) -> torch.Tensor:
        core = core_model(self.model)
        # The final norm is already applied; under device_map this is on the final norm's device.
        hidden = core.model(**inputs).last_hidden_state
        return lm_loss_sum(hidden, labels, on_its_device(core.lm_head), token_weights=token_weights,
                           confusion_weight=confusion_weight, focal_gamma=self.focal_gamma,
                           label_smoothing=self.label_smoothing).loss_sum
