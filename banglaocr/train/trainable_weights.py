"""The weights that train: copied out (the best evaluation's, kept in memory), and read back from a model folder.

A checkpoint stores every tensor once: its `model/` folder IS the store of the trainable weights
(the LoRA adapter file, or the full model file of a full fine-tune), and resume reads them back from
there with `restore_from_folder` - bit-exact, since both files keep the trainable tensors in their
training dtype (float32). `best/` is read back the same way when a resumed run scores its test split.
Checkpoints of earlier versions kept a second copy in `trainable.safetensors`; it is still read
when present.

A folder may come from someone else: the file is checked before anything is copied into the model - a
sound tensor file (`checkpoint.load_tensor_file`), every weight the model trains present with its shape, no weight the
model has no place for, and finite values. A checkpoint whose weights hold NaN or inf is refused (a
diverged run), naming the earlier checkpoint to resume instead.

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
    full model folder for a full fine-tune). The file is checked first (`weights_problem`): a weight that
    is missing, extra, of another shape or not finite is `UserError` naming the file, and nothing is loaded."""
    from banglaocr.train.checkpoint import resume_hint

    folder = Path(folder)
    hint = resume_hint(folder)
    if (folder / LEGACY_TRAINABLE_FILE).is_file():
        path = folder / LEGACY_TRAINABLE_FILE
        saved = _checked(model, path, {n: p for n, p in model.named_parameters() if p.requires_grad}, hint)
        load_trainable_state(model, saved)
        return
    if (folder / "model").is_dir():
        folder = folder / "model"
    if hasattr(model, "peft_config"):
        _restore_adapter(model, folder / ADAPTER_FILE, hint)
    else:
        _restore_full(model, folder / FULL_MODEL_FILE, hint)


def weights_problem(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                    known: set[str] | None = None) -> str | None:
    """What is wrong with the weights `saved` for a model whose trainable weights are `expected`
    (name -> a tensor of the right shape): a missing one, an unknown one (not in `known`, which defaults
    to `expected`'s names), another shape, a dtype that is not floating point, NaN or inf; None when right.

    >>> weights_problem({"w": torch.ones(2)}, {"w": torch.zeros(2)}) is None
    True
    >>> weights_problem({"w": torch.tensor([1.0, float("nan")])}, {"w": torch.zeros(2)})
    "the weight 'w' holds NaN or infinite values (did training diverge?)"
    """
    known = set(expected) if known is None else known
    missing = sorted(set(expected) - set(saved))
    if missing:
        return f"holds no weight {missing[0]!r} ({len(missing)} of the model's {len(expected)} are missing)"
    unknown = sorted(set(saved) - known)
    if unknown:
        return f"holds the weight {unknown[0]!r}, which the model does not have"
    for name, want in expected.items():
        tensor = saved[name]
        if tuple(tensor.shape) != tuple(want.shape):
            return f"the weight {name!r} has the shape {list(tensor.shape)}, the model's is {list(want.shape)}"
        if not tensor.is_floating_point():
            return f"the weight {name!r} is {str(tensor.dtype).replace('torch.', '')}, not floating point"
        if not bool(torch.isfinite(tensor).all()):
            return f"the weight {name!r} holds NaN or infinite values (did training diverge?)"
    return None


def _checked(model, path: Path, expected: dict[str, torch.Tensor], hint: str,
             known: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of `path`, refused in one line unless `weights_problem` finds them right for `expected`."""
    from banglaocr.train.checkpoint import load_tensor_file

    saved = load_tensor_file(path, hint)
    problem = weights_problem(saved, expected, known)
    if problem:
        raise UserError(f"{path}: {problem}{hint}")
    return saved


def _restore_adapter(model, path: Path, hint: str = "") -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if not path.exists() and not path.is_symlink():
        raise UserError(f"{path} is missing: the folder holds no LoRA adapter to resume from{hint}")
    # The adapter's weights under the names peft saves them with (what the file must hold, exactly).
    expected = get_peft_model_state_dict(model)
    saved = _checked(model, path, expected, hint)
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    result = set_peft_model_state_dict(model, saved)
    # peft reports the model's keys the file did not fill: none of them may be a trainable one.
    unfilled = set(result.missing_keys) & set(trainable)
    if result.unexpected_keys or unfilled or len(saved) != len(trainable):
        example = next(iter(result.unexpected_keys or sorted(unfilled) or [str(path)]))
        raise UserError(f"{path} does not match the model's adapters (e.g. {example}); was the recipe changed?")


def _restore_full(model, path: Path, hint: str = "") -> None:
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{path} is missing: the folder holds no full model weights to resume from{hint}")
    # Tied weights (lm_head = embed_tokens) are saved once under the first name; named_parameters
    # lists each shared tensor once too, under the same name.
    trainable = {name: param for name, param in model.named_parameters() if param.requires_grad}
    saved = _checked(model, path, trainable, hint, known=set(model.state_dict()))
    load_trainable_state(model, {name: saved[name] for name in trainable})
