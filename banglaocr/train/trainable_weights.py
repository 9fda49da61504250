"""The weights that train: copied out (the best evaluation's, kept in memory), and read back from a model folder.

A checkpoint stores every tensor once: its `model/` folder IS the store of the trainable weights
(the LoRA adapter file, or the full model file of a full fine-tune), and resume reads them back from
there with `restore_from_folder` - bit-exact, since both files keep the trainable tensors in their
training dtype (float32). `best/` is read back the same way when a resumed run scores its test split.
Checkpoints of earlier versions kept a second copy in `trainable.safetensors`; it is still read
when present.

>>> import tempfile, torch
>>> from banglaocr.config import ModelConfig, LoraConfig, TinyModelSpec
>>> from banglaocr.model.factory import load_model, save_model_folder
>>> _ = torch.manual_seed(0)
>>> loaded = load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=TinyModelSpec(hidden_size=64, num_layers=2)),
...                     LoraConfig(r=4))
>>> before = trainable_state(loaded.model)
>>> folder = save_model_folder(loaded, tempfile.mkdtemp())
>>> with torch.no_grad():
...     _ = [p.add_(1.0) for p in loaded.model.parameters() if p.requires_grad]
>>> restore_from_folder(loaded.model, folder)
>>> all(torch.equal(before[name], now) for name, now in trainable_state(loaded.model).items())
True
"""

from __future__ import annotations

from pathlib import Path

import torch

from banglaocr.errors import UserError

LEGACY_TRAINABLE_FILE = "trainable.safetensors"  # checkpoints of earlier versions: a second copy of the weights
ADAPTER_FILE = "adapter_model.safetensors"
FULL_MODEL_FILE = "model.safetensors"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that train (the best evaluation's weights, held until the test split)."""
    return {name: param.detach().to("cpu", copy=True).contiguous()
            for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `trainable_state` values back into `model` (names must match: the same recipe's model)."""
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise UserError(f"checkpoint does not match the model (e.g. {missing[0]}); was the recipe changed?")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def restore_from_folder(model: torch.nn.Module, folder: str | Path) -> None:
    """Put the trainable weights saved in `folder` into `model`: a checkpoint folder (its `model/`, or an
    earlier version's `trainable.safetensors`) or a model folder (an adapter folder for a LoRA model, a
    full model folder for a full fine-tune). Every trainable parameter must be found, or it is refused."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / LEGACY_TRAINABLE_FILE).is_file():
        load_trainable_state(model, load_file(str(folder / LEGACY_TRAINABLE_FILE)))
        return
    if (folder / "model").is_dir():
        folder = folder / "model"
    if hasattr(model, "peft_config"):
        _restore_adapter(model, folder / ADAPTER_FILE)
    else:
        _restore_full(model, folder / FULL_MODEL_FILE)


def _restore_adapter(model, path: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path} is missing: the folder holds no LoRA adapter to resume from")
    saved = load_file(str(path))
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    result = set_peft_model_state_dict(model, saved)
    # peft reports the model's keys the file did not fill: none of them may be a trainable one.
    unfilled = set(result.missing_keys) & set(trainable)
    if result.unexpected_keys or unfilled or len(saved) != len(trainable):
        example = next(iter(result.unexpected_keys or sorted(unfilled) or [str(path)]))
        raise UserError(f"{path} does not match the model's adapters (e.g. {example}); was the recipe changed?")


def _restore_full(model, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path} is missing: the folder holds no full model weights to resume from")
    saved = load_file(str(path))
    # Tied weights (lm_head = embed_tokens) are saved once under the first name; named_parameters
    # lists each shared tensor once too, under the same name.
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    if not trainable <= set(saved):
        example = sorted(trainable - set(saved))[0]
        raise UserError(f"{path} does not hold the model's weight {example}; was the recipe changed?")
    load_trainable_state(model, {name: saved[name] for name in trainable})
