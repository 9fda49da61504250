"""`model.device_map`: a model split over devices trains, resumes and reads like one on a single device.

A CPU has one real device, so two stand-ins do the checking:
- the meta device as "another GPU" for the last layers, under a torch function mode that fails on any op
  whose tensor arguments sit on different devices (the meta device by itself accepts CPU indices, so the
  check is explicit), and that stands in for the one copy a meta tensor cannot make (back to the CPU);
- accelerate's disk offload, which goes through the same hooks as CPU offload on a GPU machine: weights
  streamed in for each forward, trainable (LoRA) weights kept resident.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import train_helpers as helpers
from banglaocr.config import ImageConfig, LoraConfig, ModelConfig, TinyModelSpec
from banglaocr.data.collate import Collator, finish_batch_on_device
from banglaocr.data.pixels import resize_to_budget
from banglaocr.errors import UserError
from banglaocr.model.factory import _keep_vision_tower_in_fp32, core_model, load_model
from banglaocr.model.patch_embed import MatmulPatchEmbed, use_matmul_patch_embedding
from banglaocr.model.placement import execution_device, input_device, placement_summary, refuse_offloaded_trainables
from banglaocr.train.supervised_model import SupervisedLossModel

SPEC = TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, vision_depth=1,
                     vision_hidden_size=32, vision_heads=2, vision_intermediate_size=64)
LORA = LoraConfig(r=4, alpha=8, dropout=0.0)
BUDGET = ImageConfig(height=32, max_width=128, min_width=32)
PROMPT = "লেখো"
# The tiny model's module sizes (float32): vision tower 430 KB, language model + tied head about 130 KB.
# accelerate keeps room for the largest layer, so under 300 KB of CPU only the first vision modules stay and
# the vision blocks, merger and the whole language model go to disk; under 500 KB the vision tower stays whole.
SPLIT_VISION = ["cpu=300KB"]
WHOLE_VISION = ["cpu=500KB"]
# Ops that move tensors between devices (allowed to see two devices).
TRANSFERS = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.copy_}


class OneDevicePerOp(TorchFunctionMode):
    """Fails on any op whose tensor arguments sit on different devices - as a GPU would, and as the meta device
    does not. A copy out of the meta device (which has no data) returns zeros of the same shape on the target."""

    def __init__(self) -> None:
        super().__init__()
        self.devices_seen: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        self.devices_seen.update(t.device.type for t in tensors)
        if func in TRANSFERS:
            source = args[0]
            try:
                return func(*args, **kwargs)
            except NotImplementedError:  # "Cannot copy out of meta tensor": what a real transfer would give
                if source.device.type != "meta":
                    raise
                return func(torch.zeros(source.shape, dtype=source.dtype), *args[1:], **kwargs)
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            raise AssertionError(f"{getattr(func, '__name__', func)} mixes devices {sorted(map(str, devices))}")
        return func(*args, **kwargs)


def _batch(tokenizer, texts=("কলম", "আমার বই", "জল")) -> dict:
    generator = torch.Generator().manual_seed(0)
    images = []
    for index, _ in enumerate(texts):
        noise = (torch.rand(32, 64 + 32 * index, 3, generator=generator) * 255).to(torch.uint8).numpy()
        images.append(resize_to_budget(Image.fromarray(noise), BUDGET))
    return Collator(tokenizer, PROMPT, train=True)([{"image": i, "text": t} for i, t in zip(images, texts)])


def _tiny(lora: LoraConfig | None = LORA, **model) -> object:
    torch.manual_seed(0)
    return load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=SPEC, **{"dtype": "float32", **model}), lora)


def _put_last_layers_on_meta(loaded, untie: bool) -> None:
    """The tail of the language model (last decoder layer, final norm; with `untie` the lm_head too) on the meta
    device, the rest on the CPU - the 2-GPU layout with "cuda:1" played by meta. The tied head shares the input
    embedding's weight, so (like infer_auto_device_map) it stays with the embedding unless untied first."""
    from accelerate import dispatch_model

    core = core_model(loaded.model)
    if untie:
        core.lm_head.weight = torch.nn.Parameter(core.lm_head.weight.detach().clone(), requires_grad=False)
        core.config.tie_word_embeddings = False
    last = f"model.language_model.layers.{SPEC.num_layers - 1}"
    tail = {last: "meta", "model.language_model.norm": "meta", "lm_head": "meta" if untie else "cpu"}
    head = {"model.visual": "cpu", "model.language_model.embed_tokens": "cpu", "model.language_model.rotary_emb": "cpu",
            **{f"model.language_model.layers.{i}": "cpu" for i in range(SPEC.num_layers - 1)}}
    dispatch_model(core, {**head, **tail}, main_device="cpu")


@pytest.mark.parametrize("untie", [False, True], ids=["tied-head-with-embedding", "head-on-meta-too"])
def test_the_loss_path_keeps_every_op_on_one_device_when_the_last_layers_sit_elsewhere(untie):
    loaded = _tiny()
    _put_last_layers_on_meta(loaded, untie)
    core = core_model(loaded.model)
    assert execution_device(core.model.language_model.norm).type == "meta"
    batch = _batch(loaded.tokenizer)
    device = input_device(loaded.model)
    assert device.type == "cpu"
    inputs = finish_batch_on_device(batch, device)
    labels = batch["labels"].to(device)
    weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) + 0.5
    wrapper = SupervisedLossModel(loaded.model, focal_gamma=2.0, label_smoothing=0.1)
    checked = OneDevicePerOp()
    with checked:
        loss_sum = wrapper(inputs, labels, weights, confusion_weight=0.5)
        step_loss = torch.zeros((), device=device, dtype=torch.float64)
        step_loss += loss_sum.detach().double()  # what the training loop does with it
    assert {"cpu", "meta"} <= checked.devices_seen  # the tail really ran elsewhere
    assert loss_sum.device == labels.device and loss_sum.dim() == 0


def test_the_device_check_catches_an_index_on_another_device():
    hidden, index = torch.zeros(2, 3, device="meta"), torch.tensor([0, 1])
    hidden[index]  # the meta device alone lets this through
    with pytest.raises(AssertionError, match="mixes devices"), OneDevicePerOp():
        hidden[index]


# --------------------------------------------------------------------------- placement through the recipe


def test_device_map_is_honoured_for_a_tiny_model_with_layers_offloaded():
    loaded = _tiny(device_map="auto", max_memory=SPLIT_VISION)
    device_map = core_model(loaded.model).hf_device_map
    assert device_map["model.language_model"] == "disk" and device_map["model.visual.blocks.0"] == "disk"
    assert device_map["model.visual.patch_embed"] == "cpu"
    summary = placement_summary(loaded.model)
    assert summary.startswith("device map: cpu: model.visual.patch_embed") and "disk (offloaded)" in summary
    # Frozen base weights are streamed (meta between forwards); the adapters on those layers stay resident.
    params = dict(loaded.model.named_parameters())
    frozen = [name for name, p in params.items() if ".language_model." in name and "lora_" not in name]
    adapters = [name for name, p in params.items() if "lora_" in name]
    assert frozen and all(params[name].device.type == "meta" for name in frozen)
    assert adapters and all(params[name].device.type == "cpu" and params[name].requires_grad for name in adapters)
    assert input_device(loaded.model).type == "cpu"


def test_one_step_on_offloaded_layers_gives_the_gradients_of_the_model_on_one_device():
    plain, offloaded = _tiny(), _tiny(device_map="auto", max_memory=SPLIT_VISION)
    batch = _batch(plain.tokenizer)
    grads = []
    for loaded in (plain, offloaded):
        wrapper = SupervisedLossModel(loaded.model, focal_gamma=0.0, label_smoothing=0.0)
        wrapper(finish_batch_on_device(batch, "cpu"), batch["labels"]).backward()
        grads.append({n: p.grad for n, p in loaded.model.named_parameters() if p.requires_grad})
    assert sorted(grads[0]) == sorted(grads[1])
    assert all(g is not None and torch.equal(g, grads[1][n]) for n, g in grads[0].items())


def test_a_model_that_fits_nowhere_is_offloaded_whole_and_still_runs():
    """Under a cap that holds no module, accelerate maps the whole model (the empty name) to disk; it is named
    by its top-level modules instead, so the offload store finds every weight."""
    loaded = _tiny(device_map="auto", max_memory=["cpu=1KB"])
    device_map = core_model(loaded.model).hf_device_map
    assert set(device_map) == {"model", "lm_head"} and set(device_map.values()) == {"disk"}
    assert placement_summary(loaded.model) == "device map: disk (offloaded): model, lm_head"
    batch = _batch(loaded.tokenizer)
    loss = SupervisedLossModel(loaded.model, 0.0, 0.0)(finish_batch_on_device(batch, "cpu"), batch["labels"])
    loss.backward()
    assert all(p.grad is not None for p in loaded.model.parameters() if p.requires_grad)


def test_only_weightless_modules_on_disk_still_dispatch(monkeypatch):
    """accelerate writes its offload index only when it offloads a weight, but reads it for any module on disk:
    a map whose disk modules hold no weights (a rotary embedding's buffers) gets an empty index."""
    from banglaocr.model import placement

    def rotary_on_disk(model, max_memory):
        return {"model.visual": "cpu", "model.language_model.embed_tokens": "cpu",
                "model.language_model.layers": "cpu", "model.language_model.norm": "cpu",
                "model.language_model.rotary_emb": "disk", "lm_head": "cpu"}

    monkeypatch.setattr(placement, "infer_device_map", rotary_on_disk)
    loaded = _tiny(device_map="auto", max_memory=["cpu=10MB"])
    batch = _batch(loaded.tokenizer)
    reference = _tiny()
    losses = [SupervisedLossModel(m.model, 0.0, 0.0)(finish_batch_on_device(batch, "cpu"), batch["labels"])
              for m in (loaded, reference)]
    assert torch.equal(losses[0], losses[1])


def test_a_full_fine_tune_that_would_offload_is_refused_in_one_line():
    with pytest.raises(UserError, match="a full fine-tune trains every weight") as refused:
        _tiny(lora=None, device_map="auto", max_memory=SPLIT_VISION)
    assert "\n" not in str(refused.value)


def test_a_full_fine_tune_that_fits_is_placed():
    loaded = _tiny(lora=None, device_map="auto", max_memory=["cpu=10MB"])
    assert all(p.device.type == "cpu" and p.requires_grad for p in loaded.model.parameters())


def test_adapters_added_after_an_offloading_dispatch_are_refused(tmp_path):
    """What peft does to adapters on an already offloaded layer (the order transformers' own device_map loading
    gives): they land on the meta device and would never train - refused in one line."""
    from accelerate import dispatch_model

    from banglaocr.model.factory import _add_lora
    from banglaocr.model.placement import infer_device_map

    model = core_model(_tiny(lora=None).model)
    for param in model.parameters():
        param.requires_grad_(False)
    dispatch_model(model, infer_device_map(model, {"cpu": "300KB"}), offload_dir=str(tmp_path))
    with pytest.raises(UserError, match="was offloaded and would never be trained"):
        refuse_offloaded_trainables(_add_lora(model, LORA))


def test_max_memory_naming_an_absent_gpu_is_a_user_error():
    if torch.cuda.device_count() > 0:
        pytest.skip("checks a GPU index beyond those visible; this machine has GPUs")
    with pytest.raises(UserError, match="names GPU 0, but torch sees 0"):
        _tiny(device_map="auto", max_memory=["0=1GiB", "cpu=10GiB"])


# --------------------------------------------------------------------------- patches under dispatch hooks


def _run_vision_tower(loaded) -> tuple[torch.Tensor, set, list[bool]]:
    """Vision tower under fp16 autocast; (output, torch functions called, autocast state inside its block)."""
    core = core_model(loaded.model)
    batch = _batch(loaded.tokenizer)
    inputs = finish_batch_on_device(batch, "cpu")
    autocast_inside: list[bool] = []
    block = core.model.visual.blocks[0]
    handle = block.register_forward_pre_hook(lambda *_: autocast_inside.append(torch.is_autocast_enabled("cpu")))

    class Calls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.add(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    calls = Calls()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16), calls:
            out = core.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    finally:
        handle.remove()
    out = out.pooler_output if hasattr(out, "pooler_output") else out[0]
    return out, calls.names, autocast_inside


@pytest.mark.parametrize("max_memory", [SPLIT_VISION, WHOLE_VISION], ids=["vision-split", "vision-whole"])
def test_fp32_vision_tower_and_matmul_patch_embedding_survive_the_dispatch(max_memory):
    loaded = _tiny(device_map="auto", max_memory=max_memory, dtype="float16")
    core = core_model(loaded.model)
    assert hasattr(core.model.visual.patch_embed.proj, "_hf_hook") or hasattr(core.model.visual, "_hf_hook")
    out, names, autocast_inside = _run_vision_tower(loaded)
    assert autocast_inside == [False] and out.dtype == torch.float32  # the wrapper ran inside the hook
    assert "conv3d" not in names and "linear" in names  # the matmul, not the convolution


def test_patches_applied_after_the_dispatch_reach_the_forward_the_hooks_call(tmp_path):
    """The order a quantised base gives (transformers places it while loading): dispatch first, patch after."""
    from accelerate import dispatch_model

    from banglaocr.model.placement import infer_device_map

    loaded = _tiny(dtype="float16")
    core = core_model(loaded.model)
    use_matmul_patch_embedding(core, enabled=False)
    core.model.visual.forward = type(core.model.visual).forward.__get__(core.model.visual)  # undo the fp32 wrapper
    device_map = infer_device_map(core, {"cpu": "500KB"})
    dispatch_model(core, device_map, offload_dir=str(tmp_path))
    assert hasattr(core.model.visual, "_hf_hook")
    use_matmul_patch_embedding(core)
    _keep_vision_tower_in_fp32(core)
    assert type(core.model.visual.patch_embed.proj) is MatmulPatchEmbed
    out, names, autocast_inside = _run_vision_tower(loaded)
    assert autocast_inside == [False] and out.dtype == torch.float32
    assert "conv3d" not in names
    # ... and back: the saved forward follows the class again.
    use_matmul_patch_embedding(core, enabled=False)
    _, names, _ = _run_vision_tower(loaded)
    assert "conv3d" in names


# --------------------------------------------------------------------------- generation


def test_generation_under_device_map_reads_the_same_texts():
    """The shipped (trained) tiny model, loaded from its folder (`init: pretrained`) with fresh adapters (as
    the evaluations of a training run read), reads rendered words the same with most of it offloaded to disk
    as on one device."""
    import numpy as np

    from banglaocr.data.synth import bundled_fonts, bundled_words, render_word
    from banglaocr.infer import generate_texts, read_settings
    from banglaocr.metrics import corpus_scores

    settings = read_settings("tiny")
    rng = np.random.default_rng(0)
    words = bundled_words()[:8]
    font = next(path for path in bundled_fonts() if path.name.startswith("Atma-Light"))  # CER 0.39 measured
    images = [resize_to_budget(render_word(word, font, rng, clean=True), settings.image) for word in words]
    plain = load_model(ModelConfig(name_or_path="tiny"), LORA)
    offloaded = load_model(ModelConfig(name_or_path="tiny", device_map="auto", max_memory=["cpu=3MB"]), LORA)
    device_map = core_model(offloaded.model).hf_device_map
    assert device_map["model.language_model"] == "disk" and device_map["model.visual.blocks.1"] == "disk"
    texts = [generate_texts(loaded.model, loaded.tokenizer, images, settings, batch_size=4)
             for loaded in (plain, offloaded)]
    assert texts[0] == texts[1]
    assert corpus_scores(words, texts[0])["cer"] < 0.6  # it really reads (a random model scores about 1)

# --------------------------------------------------------------------------- training and resume


OFFLOAD_RUN = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "augment.enabled=true", "augment.probability=1.0",
               "train.max_steps=6", "train.eval_steps=3", "train.scheduler=cosine", "train.warmup_steps=2",
               "model.device_map=auto", f"model.max_memory=[{SPLIT_VISION[0]}]")


@pytest.fixture(scope="module")
def offloaded_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("offloaded") / "run"
    helpers.train(out, *OFFLOAD_RUN, "train.save_steps=2", "train.keep_last=10")
    return out


def test_a_run_with_offloaded_layers_trains_like_one_on_a_single_device(offloaded_reference, tmp_path):
    plain = tmp_path / "plain"
    helpers.train(plain, *OFFLOAD_RUN[:-2], "train.save_steps=2", "train.keep_last=10")
    offloaded = helpers.trainable(offloaded_reference / "checkpoints" / "step-6")
    assert offloaded and helpers.max_abs_diff(offloaded, helpers.trainable(plain / "checkpoints" / "step-6")) <= 1e-6
    first = helpers.trainable(offloaded_reference / "checkpoints" / "step-2")
    assert helpers.max_abs_diff(offloaded, first) > 1e-4  # the adapters on offloaded layers did train
    # The saved base (a tiny random one) holds the offloaded weights themselves, not meta placeholders.
    saved, expected = (helpers.trainable_file(run / "final" / "base" / "model.safetensors")
                       for run in (offloaded_reference, plain))
    assert any(".language_model.layers." in name for name in saved)
    assert helpers.max_abs_diff(saved, expected) == 0.0


def test_a_run_with_offloaded_layers_resumes_exactly(offloaded_reference, tmp_path, monkeypatch):
    from test_train_resume import sigterm_after_step

    from banglaocr.train.loop import TrainingInterrupted

    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 4)
    with pytest.raises(TrainingInterrupted):
        helpers.train(out, *OFFLOAD_RUN, "train.save_steps=0")
    monkeypatch.undo()
    helpers.train(out, *OFFLOAD_RUN, "train.save_steps=0", resume="auto")
    resumed = helpers.trainable(out / "checkpoints" / "step-6")
    assert helpers.max_abs_diff(resumed, helpers.trainable(offloaded_reference / "checkpoints" / "step-6")) <= 1e-6

