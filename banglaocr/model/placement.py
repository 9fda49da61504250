"""Where the model runs: `model.device_map` through accelerate, and the devices inputs and losses go to.

`model.device_map: auto` splits one process's model over the visible GPUs with accelerate:
`get_balanced_memory` + `infer_auto_device_map` choose the split (balanced over the GPUs, as
transformers' `device_map="auto"` does; a decoder layer or a vision block is never cut in two),
`model.max_memory` caps what each device may hold, and what fits nowhere is offloaded - to the CPU, and
past `cpu`'s cap to a temporary folder on disk. `dispatch_model` then places the weights and attaches
the hooks that move activations from device to device and stream offloaded weights in for each forward.

What accelerate leaves to its user when the model TRAINS, done here:

- Trainable weights (LoRA matrices, `lora.train_modules` copies) are never offloaded. accelerate
  re-creates an offloaded weight from its offload store at every forward and drops it afterwards, so
  the optimizer's tensor would never see a gradient (measured: LoRA added before dispatch trains
  silently nothing on an offloaded layer; added after, peft puts it on the meta device and the
  backward fails). `dispatch` keeps them resident on the layer's execution device while the layer's
  frozen base weights are streamed. A full fine-tune (every weight trainable) cannot offload at all
  and is refused in one line.
- Inputs and labels go to `input_device`: the execution device of the input embedding (the first
  parameter may be an offloaded meta tensor, or on another GPU).
- `execution_device(module)`: where a module runs (its hook's device, else its weights').

>>> max_memory_mapping(["0=14GiB", "cuda:1=14GiB", "cpu=30GiB"])
{0: '14GiB', 1: '14GiB', 'cpu': '30GiB'}
>>> input_device(torch.nn.Embedding(4, 2))
device(type='cpu')
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path
from typing import Any, Callable

import torch

from banglaocr.errors import UserError

# Devices whose modules accelerate offloads when the main (first) device is a GPU; on a machine without
# one, the CPU executes and only "disk" is offloaded.
_OFFLOAD_DEVICES_WITH_GPU = ("cpu", "disk")
_OFFLOAD_DEVICES_ON_CPU = ("disk",)


# --------------------------------------------------------------------------- the recipe's settings


def max_memory_mapping(items: list[str] | tuple[str, ...]) -> dict[int | str, str] | None:
    """`model.max_memory` items (`DEVICE=SIZE`, checked by the recipe) as accelerate's mapping; None when empty."""
    if not items:
        return None
    mapping: dict[int | str, str] = {}
    for item in items:
        device, size = (part.strip() for part in item.split("=", 1))
        device = device.removeprefix("cuda:")
        mapping[int(device) if device.isdigit() else device] = size
    return mapping


def _refuse_absent_gpus(max_memory: dict[int | str, str] | None) -> None:
    gpus = [key for key in (max_memory or {}) if isinstance(key, int)]
    visible = torch.cuda.device_count()
    missing = [gpu for gpu in gpus if gpu >= visible]
    if missing:
        raise UserError(f"model.max_memory names GPU {missing[0]}, but torch sees {visible} GPU(s) "
                        "(give only visible GPUs, and cpu)")


# --------------------------------------------------------------------------- dispatch


def _offload_devices(device_map: dict[str, Any]) -> tuple[str, ...]:
    # dispatch_model's main device is the first that is not cpu/disk; without one the CPU executes.
    has_gpu = any(device not in _OFFLOAD_DEVICES_WITH_GPU for device in device_map.values())
    return _OFFLOAD_DEVICES_WITH_GPU if has_gpu else _OFFLOAD_DEVICES_ON_CPU


def infer_device_map(model: torch.nn.Module, max_memory: dict[int | str, str] | None) -> dict[str, Any]:
    """accelerate's device map for `model` (a transformers model): balanced over the GPUs within `max_memory`."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    _refuse_absent_gpus(max_memory)
    no_split = sorted(getattr(model, "_no_split_modules", None) or [])
    try:
        balanced = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split)
        device_map = dict(infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=no_split))
    except ValueError as err:  # a size accelerate cannot read
        raise UserError(f"model.max_memory: {err}") from None
    if "" in device_map:
        # The whole model on one device: named by its top-level modules, because accelerate's offload reads
        # a module's weights by its name's prefix and finds none for the empty name.
        device = device_map.pop("")
        device_map.update({name: device for name, _ in model.named_children()})
    return device_map


def _trainable_modules(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Every module with a trainable weight of its own -> all its direct parameters and buffers."""
    found = {}
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if any(param.requires_grad for param in own.values()):
            found[name] = {**own, **dict(module.named_buffers(recurse=False))}
    return found


def dispatch(model: torch.nn.Module, max_memory: dict[int | str, str] | None, full_finetune: bool) -> dict[str, Any]:
    """Place `model` (the transformers model, adapters already inside) as `model.device_map: auto` says;
    returns the device map (also `model.hf_device_map`). Trainable weights stay resident (module docstring);
    disk offload writes to a temporary folder that lives as long as the model."""
    from accelerate import dispatch_model
    from accelerate.utils import extract_submodules_state_dict, find_tied_parameters

    device_map = infer_device_map(model, max_memory)
    offload_devices = _offload_devices(device_map)
    offloaded = [name for name, device in device_map.items() if device in offload_devices]
    if full_finetune and offloaded:
        raise UserError(f"model.device_map: {offloaded[0]} (and {len(offloaded) - 1} more) would be offloaded to "
                        f"{device_map[offloaded[0]]}, but a full fine-tune trains every weight and a trained weight "
                        "cannot be offloaded: give the GPUs more room (model.max_memory) or train LoRA")
    trainable = _trainable_modules(model)
    # accelerate re-ties tied weights after dispatch only when one of them stays on a device: a tied head
    # offloaded with its embedding becomes two offloaded copies. Saving needs to know they are one.
    tied = find_tied_parameters(model)
    folder = tempfile.TemporaryDirectory(prefix="banglaocr-offload-") if "disk" in device_map.values() else None
    disk = [name for name, device in device_map.items() if device == "disk"]
    if folder is not None and not extract_submodules_state_dict(model.state_dict(), disk):
        # accelerate writes index.json only when it offloads a weight, but reads it whenever a module sits on
        # "disk" - also when those modules hold no weights of their own (a rotary embedding): an empty index.
        (Path(folder.name) / "index.json").write_text("{}", encoding="utf-8")
    dispatch_model(model, device_map, offload_dir=folder.name if folder else None,
                   skip_keys=getattr(model, "_skip_keys_device_placement", None))
    _keep_resident(model, trainable)
    model.banglaocr_offload_folder = folder  # deleted with the model (or at exit), not before
    model.banglaocr_tied_weights = tied
    return device_map


def _offload_hook(module: torch.nn.Module):
    """The accelerate hook that offloads `module`'s own weights, or None."""
    hook = getattr(module, "_hf_hook", None)
    for one in getattr(hook, "hooks", [hook]):  # a SequentialHook holds several
        if getattr(one, "offload", False):
            return one
    return None


def _keep_resident(model: torch.nn.Module, trainable: dict[str, dict[str, torch.Tensor]]) -> int:
    """Undo the offload of modules holding trainable weights: their tensors (kept from before the dispatch)
    go back, placed on the execution device by a hook that only moves inputs. Returns how many modules."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module, remove_hook_from_module

    kept = 0
    for name, tensors in trainable.items():
        module = model.get_submodule(name)
        hook = _offload_hook(module)
        if hook is None:  # placed on its device like any weight
            continue
        # Detaching an offload hook would load each weight back from the offload store, which need not hold
        # the trainable ones (on disk: only what the state dict listed); they are put back from `tensors`.
        hook.offload = False
        remove_hook_from_module(module)
        for tensor_name, tensor in tensors.items():
            slot = module._parameters if tensor_name in module._parameters else module._buffers
            slot[tensor_name] = tensor
        add_hook_to_module(module, AlignDevicesHook(execution_device=hook.execution_device))
        kept += 1
    return kept


def refuse_offloaded_trainables(model: torch.nn.Module) -> None:
    """One line if a trainable weight sits on the meta device (offloaded: it would never be trained)."""
    for name, param in model.named_parameters():
        if param.requires_grad and param.device.type == "meta":
            raise UserError(f"model.device_map: the trainable weight {name} was offloaded and would never be "
                            "trained; give the GPUs more room (model.max_memory) or narrow lora.target_modules")


def offloaded_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with offloaded (meta) tensors read back from accelerate's offload store.

    >>> sorted(offloaded_state_dict(torch.nn.Linear(2, 1)))
    ['bias', 'weight']
    """
    from accelerate.utils import find_tied_parameters

    state = model.state_dict()
    if all(tensor.device.type != "meta" for tensor in state.values()):
        return state
    for module_name, module in model.named_modules():
        hook = _offload_hook(module)
        if hook is None or hook.weights_map is None:
            continue
        prefix = f"{module_name}." if module_name else ""
        for key in list(state):
            name = key[len(prefix):]
            if key.startswith(prefix) and "." not in name and state[key].device.type == "meta":
                state[key] = hook.weights_map[name]
    # Tied weights (a tied lm_head) read back as separate copies: make them one tensor again, so that
    # saving writes them once, as for a model that was never offloaded (`dispatch` noted the ties).
    for group in getattr(model, "banglaocr_tied_weights", None) or find_tied_parameters(model):
        present = [name for name in group if name in state]
        for name in present[1:]:
            state[name] = state[present[0]]
    return state


def placement_summary(model: torch.nn.Module) -> str | None:
    """One line: which modules run where (None when accelerate did not split the model).

    >>> m = torch.nn.Linear(2, 2)
    >>> m.hf_device_map = {"model.visual": 0, "model.language_model.layers.0": 0, "model.language_model.layers.1": 0,
    ...                    "model.language_model.layers.2": "cpu", "lm_head": 0}
    >>> placement_summary(m)
    'device map: 0: model.visual, layers 0-1, lm_head | cpu (offloaded): layers 2'
    """
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return None
    offload_devices = _offload_devices(device_map)
    if len(set(device_map.values())) < 2 and not set(device_map.values()) & set(offload_devices):
        return None  # one device, nothing offloaded: placed, not split
    groups: dict[Any, list[str]] = {}
    for name, device in device_map.items():
        groups.setdefault(device, []).append(name)
    parts = []
    for device, names in groups.items():
        label = f"{device} (offloaded)" if device in offload_devices else str(device)
        parts.append(f"{label}: {', '.join(_short_names(names))}")
    return "device map: " + " | ".join(parts)


def _short_names(names: list[str]) -> list[str]:
    """`...layers.3`, `...layers.4`, `...layers.5` -> `layers 3-5`; other names as they are."""
    out: list[str] = []
    layers: list[int] = []

    def flush() -> None:
        if layers:
            out.append(f"layers {layers[0]}-{layers[-1]}" if len(layers) > 1 else f"layers {layers[0]}")
            layers.clear()

    for name in names:
        head, _, tail = name.rpartition(".")
        if head.endswith("language_model.layers") and tail.isdigit():
            if layers and int(tail) != layers[-1] + 1:
                flush()
            layers.append(int(tail))
            continue
        flush()
        out.append(name)
    flush()
    return out


# --------------------------------------------------------------------------- devices


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where `module` runs: its accelerate hook's execution device, else the device of its first weight
    that is not on meta, else the CPU."""
    hook = getattr(module, "_hf_hook", None)
    for one in getattr(hook, "hooks", [hook]):
        device = getattr(one, "execution_device", None)
        if device is not None:
            return torch.device(device)
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a model's inputs (and the labels of its loss) go: where its input embedding runs.

    A transformers model or a PeftModel around one (`get_input_embeddings`); any other module: where it runs.
    """
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    return execution_device(embeddings if isinstance(embeddings, torch.nn.Module) else model)


def set_forward(module: torch.nn.Module, forward: Callable[..., Any]) -> None:
    """Bind `forward` as `module`'s forward so that accelerate's hook (if one is attached, now or later)
    still runs around it: under a hook the module's `forward` is the hook's wrapper and the original is
    its `_old_forward`; replacing `forward` itself would drop the hook (and its device moves)."""
    bound = types.MethodType(forward, module)
    if hasattr(module, "_hf_hook") and hasattr(module, "_old_forward"):
        module._old_forward = bound
    else:
        module.forward = bound
