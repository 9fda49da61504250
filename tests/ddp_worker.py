"""One process of a multi-process test launch: train the tiny recipe, then dump THIS rank's weights.

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT DUMP override...

`run_training` writes files from the main process only, so ranks cannot be compared from the output
folder. This script records the model `load_model` built in this process and, after the run, saves its
trainable parameters to `DUMP/rank{R}.safetensors` (R = this process's rank).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    from accelerate import PartialState
    from rich.console import Console
    from safetensors.torch import save_file

    from banglaocr.config import load_recipe
    from banglaocr.train import loop

    output_dir, dump_dir, *overrides = argv
    built = []
    original = loop.load_model

    def recording_load_model(*args, **kwargs):
        loaded = original(*args, **kwargs)
        built.append(loaded)
        return loaded

    loop.load_model = recording_load_model  # the name the training run calls
    loop.run_training(load_recipe("cpu_demo", overrides), output_dir, console=Console(file=io.StringIO()))
    rank = PartialState().process_index
    Path(dump_dir).mkdir(parents=True, exist_ok=True)
    model = built[-1].model
    if hasattr(model, "peft_config"):  # named as in the adapter file a checkpoint stores them in
        from peft import get_peft_model_state_dict

        state = {name: tensor.detach().cpu().contiguous() for name, tensor in get_peft_model_state_dict(model).items()}
    else:
        state = loop.trainable_state(model)
    save_file(state, str(Path(dump_dir) / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1:])
