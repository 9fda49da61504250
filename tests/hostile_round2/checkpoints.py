"""Crafted checkpoints: a real tiny run's checkpoint whose state.json is consistent but whose contents lie.

`good_run(out, variant)` trains a tiny run (LoRA with dropout and augmentation, or a full fine-tune) for
4 steps with checkpoints at steps 2 and 4. Each generator function below takes a copy of that run's
newest checkpoint (`checkpoints/step-4`) and makes one lie; then `reseal` rewrites its state.json over
the lie (sizes and SHA-256 of the files as they now are), so the manifest vouches for it - what someone
crafting a checkpoint, or a buggy writer, would produce. `CASES` names, for each generator, the file the
one error line must name and what it must say; `--resume auto` must then exit 2 with that line (naming
the earlier step-2 to resume instead), never a traceback, and leave the run folder as it was.

Everything is built from code (no binary fixtures in the repository).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from hostile_round2.model_folders import read_safetensors, write_safetensors

STEPS = 4
RUN_ARGS = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "augment.enabled=true", "augment.probability=1.0",
            f"train.max_steps={STEPS}", "train.save_steps=2", "train.eval_steps=2", "train.keep_last=10",
            "train.scheduler=cosine", "train.warmup_steps=1")
FULL_ARGS = ("lora=null", "augment.enabled=true", "augment.probability=1.0", f"train.max_steps={STEPS}",
             "train.save_steps=2", "train.eval_steps=2", "train.keep_last=10")
ADAPTER = "model/adapter_model.safetensors"
FULL = "model/model.safetensors"
MARKER = "code-ran"
"""Written into the run folder by the planted pickles' code if it ever runs."""


def run_args(variant: str) -> tuple[str, ...]:
    return RUN_ARGS if variant == "lora" else FULL_ARGS


def good_run(out: Path, variant: str = "lora") -> Path:
    """A finished tiny run in `out` with whole checkpoints step-2 and step-4 (`variant`: lora | full)."""
    import train_helpers as helpers

    helpers.train(out, *run_args(variant))
    return out


# --------------------------------------------------------------------------- tools


def reseal(folder: Path) -> None:
    """Rewrite state.json over whatever the folder holds now (its info kept): the manifest then vouches for the lie."""
    from banglaocr.train import checkpoint as ckpt

    info = json.loads((folder / ckpt.MANIFEST).read_text(encoding="utf-8"))
    info.pop("files", None)
    ckpt.write_manifest(folder, info)


def edit_tensors(path: Path, change: Callable[[dict], None]) -> None:
    """Load a tensor file, let `change` edit the dict of tensors, save it again (a sound file that lies)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def edit_state(folder: Path, name: str, change: Callable[[dict], None]) -> None:
    """Read a JSON + safetensors state (training_state, rng-rank0), let `change` edit it, write it back as a
    consistent pair: the lie is in what the state says, not in how it is stored."""
    from banglaocr.train import checkpoint as ckpt

    state = ckpt.read_state(folder, name)
    change(state)
    ckpt.write_state(folder, name, state)


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")


def _first_key(header: dict) -> str:
    return sorted(key for key in header if key != "__metadata__")[0]


def _some_weight(tensors: dict) -> str:
    return sorted(tensors)[len(tensors) // 2]


class PlantedCode:
    """Unpickling this runs `touch MARKER` - what a crafted pickle in a checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --------------------------------------------------------------------------- safetensors files that lie


def header_length_past_the_end(folder: Path) -> None:
    """training_state.safetensors: the 8-byte header length claims more bytes than the file holds."""
    path = folder / "training_state.safetensors"
    header, data = read_safetensors(path)
    write_safetensors(path, header, data, length=path.stat().st_size + 1000)


def header_not_json(folder: Path) -> None:
    """training_state.safetensors: the header (of the right length) is not JSON."""
    path = folder / "training_state.safetensors"
    header, data = read_safetensors(path)
    encoded = json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(encoded)) + b"\xff{" * (len(encoded) // 2) + b"{" * (len(encoded) % 2)
                     + data)


def offsets_past_the_end(folder: Path) -> None:
    """The adapter file: a tensor's data offsets point past the end of the data (its size kept)."""
    path = folder / ADAPTER
    header, data = read_safetensors(path)
    key = _first_key(header)
    begin, end = header[key]["data_offsets"]
    header[key]["data_offsets"] = [begin + len(data), end + len(data)]
    write_safetensors(path, header, data)


def unknown_dtype(folder: Path) -> None:
    """The adapter file: a tensor's dtype is a name no library knows."""
    path = folder / ADAPTER
    header, data = read_safetensors(path)
    header[_first_key(header)]["dtype"] = "Q7"
    write_safetensors(path, header, data)


def data_shorter_than_shape(folder: Path) -> None:
    """The adapter file: the header is intact, but the data ends 16 bytes early (a copy cut short)."""
    path = folder / ADAPTER
    path.write_bytes(path.read_bytes()[:-16])


def rng_file_cut_short(folder: Path) -> None:
    """rng-rank0.safetensors: cut in half."""
    path = folder / "rng-rank0.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _marker(folder: Path) -> Path:
    return folder.parent.parent / MARKER  # checkpoints/step-4 -> the run folder


def pickle_as_safetensors(folder: Path) -> None:
    """training_state.safetensors holds a torch pickle that would run code if it were unpickled."""
    torch.save({"optimizer": PlantedCode(_marker(folder))}, folder / "training_state.safetensors")


def legacy_pickle_runs_code(folder: Path) -> None:
    """The checkpoint in the layout of earlier versions (torch-saved .pt states, no state.json), its
    training_state.pt a pickle that runs code when unpickled - they are read weights-only, so it is refused."""
    from banglaocr.train import checkpoint as ckpt

    torch.save(ckpt.read_state(folder, "rng-rank0"), folder / "rng-rank0.pt")
    torch.save({"optimizer": PlantedCode(_marker(folder))}, folder / "training_state.pt")
    for name in ("training_state.json", "training_state.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
                 "state.json"):
        (folder / name).unlink()


# --------------------------------------------------------------------------- weights that do not fit the model


def adapter_weight_missing(folder: Path) -> None:
    """The adapter file lacks one of the model's LoRA weights."""
    edit_tensors(folder / ADAPTER, lambda t: t.pop(_some_weight(t)))


def adapter_weight_extra(folder: Path) -> None:
    """The adapter file holds a LoRA weight for a layer the model does not have."""
    edit_tensors(folder / ADAPTER, lambda t: t.update(
        {"base_model.model.model.language_model.layers.7.self_attn.q_proj.lora_A.weight": torch.zeros(4, 32)}))


def adapter_weight_wrong_shape(folder: Path) -> None:
    """The adapter file: one LoRA weight transposed (same bytes, another shape)."""
    def change(tensors: dict) -> None:
        key = sorted(k for k in tensors if "lora_A" in k)[0]
        tensors[key] = tensors[key].t().contiguous()
    edit_tensors(folder / ADAPTER, change)


def adapter_weight_not_float(folder: Path) -> None:
    """The adapter file: one weight stored as integers."""
    def change(tensors: dict) -> None:
        key = _some_weight(tensors)
        tensors[key] = tensors[key].to(torch.int32)
    edit_tensors(folder / ADAPTER, change)


def adapter_weights_nan(folder: Path) -> None:
    """The adapter file: a weight holds NaN (a run that diverged)."""
    def change(tensors: dict) -> None:
        tensors[_some_weight(tensors)].view(-1)[0] = math.nan
    edit_tensors(folder / ADAPTER, change)


def adapter_weights_inf(folder: Path) -> None:
    """The adapter file: a weight holds -inf."""
    def change(tensors: dict) -> None:
        tensors[_some_weight(tensors)].view(-1)[-1] = -math.inf
    edit_tensors(folder / ADAPTER, change)


def weights_file_gone(folder: Path) -> None:
    """model/ holds no weights file at all (and the manifest does not list one)."""
    (folder / ADAPTER).unlink()


def full_weight_missing(folder: Path) -> None:
    """A full fine-tune's model.safetensors lacks a weight the model trains."""
    edit_tensors(folder / FULL, lambda t: t.pop(sorted(k for k in t if "layers.0.mlp" in k)[0]))


def full_weight_wrong_shape(folder: Path) -> None:
    """A full fine-tune's model.safetensors: one weight with another shape."""
    def change(tensors: dict) -> None:
        key = sorted(k for k in tensors if "layers.0.mlp" in k)[0]
        tensors[key] = torch.zeros(tensors[key].numel() + 6)
    edit_tensors(folder / FULL, change)


def full_weights_nan(folder: Path) -> None:
    """A full fine-tune's model.safetensors: the embedding holds NaN."""
    def change(tensors: dict) -> None:
        key = sorted(k for k in tensors if "embed_tokens" in k)[0]
        tensors[key][0, 0] = math.nan
    edit_tensors(folder / FULL, change)


# --------------------------------------------------------------------------- optimizer, scheduler, scaler


def _optimizer(change: Callable[[dict], None]) -> Callable[[dict], None]:
    return lambda state: change(state["optimizer"])


def optimizer_moment_missing(folder: Path) -> None:
    """The optimizer state of one parameter lacks exp_avg_sq."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"][0].pop("exp_avg_sq")))


def optimizer_extra_entry(folder: Path) -> None:
    """The optimizer state of one parameter holds an entry AdamW does not keep."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"][0].update(momentum_buffer=torch.zeros(1))))


def optimizer_moment_wrong_shape(folder: Path) -> None:
    """exp_avg of one parameter has another shape than the parameter (torch would broadcast or fail steps later)."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"][1].update(exp_avg=torch.zeros(3))))


def optimizer_moment_nan(folder: Path) -> None:
    """exp_avg_sq of one parameter holds NaN: the first step would make the weights NaN."""
    def change(optimizer: dict) -> None:
        optimizer["state"][2]["exp_avg_sq"].view(-1)[0] = math.nan
    edit_state(folder, "training_state", _optimizer(change))


def optimizer_state_of_a_parameter_missing(folder: Path) -> None:
    """The optimizer state covers all but one parameter (that one would silently start from zero)."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"].pop(max(o["state"]))))


def optimizer_state_for_an_unknown_parameter(folder: Path) -> None:
    """The optimizer state holds an entry for parameter 99 of a model that has 14."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"].update({99: dict(o["state"][0])})))


def optimizer_groups_do_not_match(folder: Path) -> None:
    """The optimizer's parameter group lists one parameter fewer than the model trains."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["param_groups"][0]["params"].pop()))


def optimizer_lr_not_a_number(folder: Path) -> None:
    """The optimizer's learning rate is text."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["param_groups"][0].update(lr="fast")))


def optimizer_step_out_of_range(folder: Path) -> None:
    """The AdamW step count of one parameter is far beyond the checkpoint's step."""
    edit_state(folder, "training_state", _optimizer(lambda o: o["state"][0].update(step=torch.tensor(1e6))))


def optimizer_not_a_state(folder: Path) -> None:
    """The optimizer state is a list."""
    edit_state(folder, "training_state", lambda s: s.update(optimizer=[1, 2, 3]))


def scheduler_unknown_key(folder: Path) -> None:
    """The scheduler state holds a key LambdaLR would set as an attribute (here: over its optimizer)."""
    edit_state(folder, "training_state", lambda s: s["scheduler"].update(optimizer=5))


def scheduler_at_another_step(folder: Path) -> None:
    """The scheduler says it is at step 99 of a step-4 checkpoint (the learning rate would jump)."""
    edit_state(folder, "training_state", lambda s: s["scheduler"].update(last_epoch=99))


def scheduler_not_a_table(folder: Path) -> None:
    """The scheduler state is a number."""
    edit_state(folder, "training_state", lambda s: s.update(scheduler=7))


def scaler_wrong_structure(folder: Path) -> None:
    """A GradScaler state that is not one (a run in fp32 saves none)."""
    edit_state(folder, "training_state", lambda s: s.update(scaler={"scale": "big"}))


def training_state_without_run_state(folder: Path) -> None:
    """training_state holds no run_state."""
    edit_state(folder, "training_state", lambda s: s.pop("run_state"))


# --------------------------------------------------------------------------- the JSON of a state


def training_state_json_not_json(folder: Path) -> None:
    """training_state.json is not JSON."""
    (folder / "training_state.json").write_text('{"optimizer": {"state": ', encoding="utf-8")


def training_state_json_names_a_missing_tensor(folder: Path) -> None:
    """training_state.json refers to a tensor its .safetensors file does not hold."""
    edit_json(folder / "training_state.json",
              lambda raw: raw["optimizer"]["state"]["__items__"][0][1].update(exp_avg={"__tensor__": "t999"}))


def training_state_tensors_not_named(folder: Path) -> None:
    """training_state.safetensors holds a tensor its JSON never names (the two files are not a pair)."""
    edit_tensors(folder / "training_state.safetensors", lambda t: t.update(stray=torch.zeros(2)))


def training_state_nested_too_deep(folder: Path) -> None:
    """training_state.json nests lists 100,000 deep."""
    (folder / "training_state.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


# --------------------------------------------------------------------------- counters of the run state


def _run_state(**values) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        edit_state(folder, "training_state", lambda s: s["run_state"].update(values))
    return craft


def run_state_step_is_text(folder: Path) -> None:
    """run_state.step is the text "4"."""
    _run_state(step="4")(folder)


def run_state_step_negative(folder: Path) -> None:
    """run_state.step is -4."""
    _run_state(step=-4)(folder)


def run_state_step_not_the_folders(folder: Path) -> None:
    """run_state.step is 3 in step-4 (whose state.json says 4)."""
    _run_state(step=3)(folder)


def run_state_unknown_field(folder: Path) -> None:
    """run_state holds a field this version does not know."""
    _run_state(epoch=2)(folder)


def data_position_off(folder: Path) -> None:
    """run_state.batches_consumed points far past where 4 steps of the stream end (data would be skipped)."""
    _run_state(batches_consumed=1000)(folder)


def samples_seen_out_of_range(folder: Path) -> None:
    """run_state.samples_seen is more than 4 steps can have seen."""
    _run_state(samples_seen=10**9)(folder)


def best_step_in_the_future(folder: Path) -> None:
    """run_state.best_step is after the checkpoint's step."""
    _run_state(best_step=40)(folder)


def nonfinite_counts_disagree(folder: Path) -> None:
    """More non-finite steps in a row than non-finite steps in all."""
    _run_state(nonfinite_steps=1, consecutive_nonfinite=3)(folder)


def skipped_counts_disagree(folder: Path) -> None:
    """run_state.skipped_samples is 5 with no skipped sample listed."""
    _run_state(skipped_samples=5)(folder)


def train_time_not_finite(folder: Path) -> None:
    """run_state.train_time_s is NaN (JSON allows it)."""
    _run_state(train_time_s=math.nan)(folder)


def confusion_table_broken(folder: Path) -> None:
    """run_state.confusion is not a confusion table."""
    _run_state(confusion={"level": "char"})(folder)


def wandb_id_odd(folder: Path) -> None:
    """run_state.wandb_id is a path, not a W&B run id."""
    _run_state(wandb_id="../../elsewhere")(folder)


def manifest_step_not_the_folders(folder: Path) -> None:
    """state.json says step 7 in the folder step-4."""
    edit_json(folder / "state.json", lambda raw: raw.update(step=7))


def manifest_step_is_text(folder: Path) -> None:
    """state.json's step is the text "four"."""
    edit_json(folder / "state.json", lambda raw: raw.update(step="four"))


def trained_on_other_data(folder: Path) -> None:
    """state.json says the checkpoint was trained on a training split of other samples."""
    edit_json(folder / "state.json", lambda raw: raw["train_data"].update(sha256="0" * 64))


# --------------------------------------------------------------------------- RNG states


def _rng(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        edit_state(folder, "rng-rank0", change)
    return craft


def torch_rng_wrong_length(folder: Path) -> None:
    """The torch RNG state is 100 bytes (torch.set_rng_state would raise after the optimizer was restored)."""
    _rng(lambda s: s.update(torch=s["torch"][:100].clone()))(folder)


def torch_rng_wrong_dtype(folder: Path) -> None:
    """The torch RNG state is a float tensor."""
    _rng(lambda s: s.update(torch=s["torch"].float()))(folder)


def augment_rng_missing(folder: Path) -> None:
    """The augmentation generator's state is missing (augmentation would not continue exactly)."""
    _rng(lambda s: s.pop("augment"))(folder)


def numpy_rng_wrong_length(folder: Path) -> None:
    """The numpy RNG state holds 10 words instead of 624."""
    _rng(lambda s: s.update(numpy=(s["numpy"][0], s["numpy"][1][:10].copy(), *s["numpy"][2:])))(folder)


def numpy_rng_position_out_of_range(folder: Path) -> None:
    """The numpy RNG position is 700 (numpy itself accepts it)."""
    _rng(lambda s: s.update(numpy=(*s["numpy"][:2], 700, *s["numpy"][3:])))(folder)


def python_rng_wrong_length(folder: Path) -> None:
    """The python RNG state holds 10 words instead of 625."""
    _rng(lambda s: s.update(python=(3, s["python"][1][:10], None)))(folder)


def python_rng_wrong_version(folder: Path) -> None:
    """The python RNG state says version 2 (python accepts it and draws other numbers)."""
    _rng(lambda s: s.update(python=(2, *s["python"][1:])))(folder)


def rng_array_dtype_unknown(folder: Path) -> None:
    """rng-rank0.json names an array dtype numpy would build objects from."""
    edit_json(folder / "rng-rank0.json", lambda raw: raw["numpy"]["__tuple__"][1].update(dtype="object"))


def thread_count_nonsense(folder: Path) -> None:
    """The recorded thread count is 0."""
    _rng(lambda s: s.update(threads=0))(folder)


# --------------------------------------------------------------------------- files that are not files


def state_file_is_a_folder(folder: Path) -> None:
    """training_state.json replaced by a folder of that name."""
    (folder / "training_state.json").unlink()
    (folder / "training_state.json").mkdir()
    (folder / "training_state.json" / "x").write_text("{}", encoding="utf-8")


def recipe_is_a_folder(folder: Path) -> None:
    """recipe.yaml replaced by a folder of that name."""
    (folder / "recipe.yaml").unlink()
    (folder / "recipe.yaml").mkdir()


def weights_are_a_symlink(folder: Path) -> None:
    """The adapter file replaced by a symbolic link to a copy of itself elsewhere (same bytes)."""
    path = folder / ADAPTER
    elsewhere = folder.parent.parent / "elsewhere.safetensors"
    shutil.copy(path, elsewhere)
    path.unlink()
    path.symlink_to(elsewhere)


def model_folder_is_a_symlink(folder: Path) -> None:
    """model/ replaced by a symbolic link to a copy of it elsewhere."""
    elsewhere = folder.parent.parent / "elsewhere-model"
    shutil.copytree(folder / "model", elsewhere)
    shutil.rmtree(folder / "model")
    (folder / "model").symlink_to(elsewhere, target_is_directory=True)


def rng_file_is_a_fifo(folder: Path) -> None:
    """rng-rank0.json replaced by a FIFO (a reader that opened it would wait forever)."""
    (folder / "rng-rank0.json").unlink()
    os.mkfifo(folder / "rng-rank0.json")


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Case:
    craft: Callable[[Path], None]
    file: str
    """The checkpoint file (relative to step-4) the error line names."""
    says: str
    """A fragment of what the line says is wrong."""
    variant: str = "lora"
    fast: bool = False
    """In the default test run (the others run with -m slow)."""
    hint: bool = True
    """The line names the earlier checkpoint (step-2) to resume instead."""
    reseal: bool = True
    """Rewrite state.json over the lie (False: a checkpoint of an earlier version, which has none)."""


CASES: dict[str, Case] = {case.craft.__name__: case for case in [
    Case(header_length_past_the_end, "training_state.safetensors", "header claims", fast=True),
    Case(header_not_json, "training_state.safetensors", "header is not JSON"),
    Case(offsets_past_the_end, ADAPTER, "starts at byte"),
    Case(unknown_dtype, ADAPTER, "unknown dtype 'Q7'", fast=True),
    Case(data_shorter_than_shape, ADAPTER, "the file holds"),
    Case(rng_file_cut_short, "rng-rank0.safetensors", "the file holds"),
    Case(pickle_as_safetensors, "training_state.safetensors", "header claims", fast=True),
    Case(legacy_pickle_runs_code, "training_state.pt", "not a plain tensor state", fast=True, hint=False,
         reseal=False),
    Case(adapter_weight_missing, ADAPTER, "holds no weight", fast=True),
    Case(adapter_weight_extra, ADAPTER, "which the model does not have"),
    Case(adapter_weight_wrong_shape, ADAPTER, "has the shape [64, 4], the model's is [4, 64]", fast=True),
    Case(adapter_weight_not_float, ADAPTER, "is int32, not floating point"),
    Case(adapter_weights_nan, ADAPTER, "NaN or infinite values", fast=True),
    Case(adapter_weights_inf, ADAPTER, "NaN or infinite values"),
    Case(weights_file_gone, "model", "holds no weights"),
    Case(full_weight_missing, FULL, "holds no weight", variant="full"),
    Case(full_weight_wrong_shape, FULL, "has the shape", variant="full", fast=True),
    Case(full_weights_nan, FULL, "NaN or infinite values", variant="full", fast=True),
    Case(optimizer_moment_missing, "training_state.json", "AdamW keeps", fast=True),
    Case(optimizer_extra_entry, "training_state.json", "AdamW keeps"),
    Case(optimizer_moment_wrong_shape, "training_state.json", "optimizer.state[1].exp_avg has the shape [3]",
         fast=True),
    Case(optimizer_moment_nan, "training_state.json", "NaN or infinite"),
    Case(optimizer_state_of_a_parameter_missing, "training_state.json", "for 13 of the model's 14"),
    Case(optimizer_state_for_an_unknown_parameter, "training_state.json", "for parameter 99"),
    Case(optimizer_groups_do_not_match, "training_state.json", "parameter groups of [13] parameters"),
    Case(optimizer_lr_not_a_number, "training_state.json", "param_groups[0].lr is 'fast'"),
    Case(optimizer_step_out_of_range, "training_state.json", "not a step count from 0 to 4"),
    Case(optimizer_not_a_state, "training_state.json", "not {state, param_groups}"),
    Case(scheduler_unknown_key, "training_state.json", "scheduler state holds 'optimizer'", fast=True),
    Case(scheduler_at_another_step, "training_state.json", "scheduler.last_epoch is 99"),
    Case(scheduler_not_a_table, "training_state.json", "scheduler state is not a table"),
    Case(scaler_wrong_structure, "training_state.json", "GradScaler state is not"),
    Case(training_state_without_run_state, "training_state.json", "holds no run_state"),
    Case(training_state_json_not_json, "training_state.json", "is not JSON", fast=True),
    Case(training_state_json_names_a_missing_tensor, "training_state.json", "names the tensor 't999'"),
    Case(training_state_tensors_not_named, "training_state.safetensors", "never names (e.g. 'stray')"),
    Case(training_state_nested_too_deep, "training_state.json", "nested too deeply"),
    Case(run_state_step_is_text, "training_state.json", "run_state.step is '4'", fast=True),
    Case(run_state_step_negative, "training_state.json", "run_state.step is -4"),
    Case(run_state_step_not_the_folders, "training_state.json", "run_state.step is 3, the checkpoint's step is 4"),
    Case(run_state_unknown_field, "training_state.json", "holds 'epoch'"),
    Case(data_position_off, "training_state.json", "batches_consumed is 1000", fast=True),
    Case(samples_seen_out_of_range, "training_state.json", "samples_seen"),
    Case(best_step_in_the_future, "training_state.json", "best_step is 40"),
    Case(nonfinite_counts_disagree, "training_state.json", "non-finite steps"),
    Case(skipped_counts_disagree, "training_state.json", "skipped_samples is 5"),
    Case(train_time_not_finite, "training_state.json", "train_time_s is nan: not finite"),
    Case(confusion_table_broken, "training_state.json", "not a confusion table"),
    Case(wandb_id_odd, "training_state.json", "not a W&B run id"),
    Case(manifest_step_not_the_folders, "state.json", "its step 7 is not the step of the folder step-4", fast=True),
    Case(manifest_step_is_text, "state.json", "its step 'four'"),
    Case(trained_on_other_data, "state.json", "trained on a training split", fast=True, hint=False),
    Case(torch_rng_wrong_length, "rng-rank0.json", "torch state is 100 bytes", fast=True),
    Case(torch_rng_wrong_dtype, "rng-rank0.json", "torch state is not a 1-D byte tensor"),
    Case(augment_rng_missing, "rng-rank0.json", "holds no augment state"),
    Case(numpy_rng_wrong_length, "rng-rank0.json", "numpy state is not", fast=True),
    Case(numpy_rng_position_out_of_range, "rng-rank0.json", "numpy state is not"),
    Case(python_rng_wrong_length, "rng-rank0.json", "python state is not", fast=True),
    Case(python_rng_wrong_version, "rng-rank0.json", "python state is not"),
    Case(rng_array_dtype_unknown, "rng-rank0.json", "array dtype 'object'"),
    Case(thread_count_nonsense, "rng-rank0.json", "thread count 0"),
    Case(state_file_is_a_folder, "training_state.json", "is a folder, not a file", fast=True),
    Case(recipe_is_a_folder, "recipe.yaml", "is a folder, not a file"),
    Case(weights_are_a_symlink, ADAPTER, "is a symbolic link", fast=True),
    Case(model_folder_is_a_symlink, "model", "symbolic link to another folder"),
    Case(rng_file_is_a_fifo, "rng-rank0.json", "not a regular file", fast=True),
]}
