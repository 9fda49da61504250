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
from banglaocr.train.loss import lm_loss_sum


class SupervisedLossModel(torch.nn.Module):
    """The module DDP wraps: model body -> hidden states -> lm_head at supervised positions -> loss sum.

    The model never computes its own loss (no `labels` go in), and full-vocabulary logits are
    never built for the prompt and image positions: memory is O(answer tokens x vocab).
    """
    def __init__(self, model: torch.nn.Module, focal_gamma: float, label_smoothing: float):
        super().__init__()
        self.model = model
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing

    def forward(self, inputs: dict, labels: torch.Tensor, token_weights: torch.Tensor | None = None,
                confusion_weight: float = 0.0) -> torch.Tensor:
        core = core_model(self.model)
        hidden = core.model(**inputs).last_hidden_state  # the final norm is already applied
        return lm_loss_sum(hidden, labels, core.lm_head, token_weights=token_weights,
                           confusion_weight=confusion_weight, focal_gamma=self.focal_gamma,
                           label_smoothing=self.label_smoothing).loss_sum
