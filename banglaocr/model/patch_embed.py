"""Qwen3-VL's patch embedding as the matrix product it is.

The vision tower embeds each patch with a Conv3d whose kernel equals its stride and its input
(temporal 2 x 16 x 16): one output per patch, i.e. exactly `flattened patch @ weight.T + bias`.
On recent torch versions that Conv3d can fall back to a slow kernel (reported as 10-50x slower
Qwen3-VL training in other fine-tuning tools); a matmul is the fastest path everywhere.

`use_matmul_patch_embedding(model)` turns such Conv3d modules into `MatmulPatchEmbed` in place: a
Conv3d subclass with the same parameters under the same names (state dicts, saved folders, LoRA and
merges are unchanged - plain transformers loads what banglaocr saves as the usual Conv3d), whose
forward is the matmul when the input is one kernel-sized patch per row, and the convolution otherwise.
Under accelerate's dispatch hooks (`model.device_map`) the swap reaches the forward the hook calls
too: the hook keeps the forward it found as `_old_forward`, bound to the class of that moment.

>>> import torch
>>> conv = torch.nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4))
>>> patches = torch.randn(5, 3, 2, 4, 4)
>>> expected = conv(patches)
>>> use_matmul_patch_embedding(conv)
1
>>> type(conv).__name__, bool((conv(patches) - expected).abs().max() < 1e-5)
('MatmulPatchEmbed', True)
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


class MatmulPatchEmbed(torch.nn.Conv3d):
    """A Conv3d (kernel = stride, no padding) computed as a matmul on flattened kernel-sized patches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.kernel_size):  # not one patch per row: the general convolution
            return super().forward(x)
        out = F.linear(x.reshape(x.shape[0], -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return out.view(x.shape[0], self.out_channels, 1, 1, 1)


def _is_patch_conv(module: torch.nn.Module) -> bool:
    return (type(module) is torch.nn.Conv3d and tuple(module.kernel_size) == tuple(module.stride)
            and tuple(module.padding) == (0, 0, 0) and tuple(module.dilation) == (1, 1, 1) and module.groups == 1)


def _rebind_saved_forwards(module: torch.nn.Module) -> None:
    """Point forwards bound on the instance (accelerate's `_old_forward`, or the `forward` that removing a
    hook puts back) at the module's current class; they were bound to the class it had then."""
    for attribute in ("_old_forward", "forward"):
        saved = module.__dict__.get(attribute)
        if isinstance(saved, types.MethodType) and saved.__func__ in (torch.nn.Conv3d.forward, MatmulPatchEmbed.forward):
            module.__dict__[attribute] = types.MethodType(type(module).forward, module)


def use_matmul_patch_embedding(model: torch.nn.Module, enabled: bool = True) -> int:
    """Turn the patch-embedding Conv3d modules of `model` into `MatmulPatchEmbed` (or back, with
    `enabled=False`); returns how many were changed. Parameters are not touched."""
    changed = 0
    for module in model.modules():
        if enabled and _is_patch_conv(module):
            module.__class__ = MatmulPatchEmbed
        elif not enabled and type(module) is MatmulPatchEmbed:
            module.__class__ = torch.nn.Conv3d
        else:
            continue
        _rebind_saved_forwards(module)
        changed += 1
    return changed
