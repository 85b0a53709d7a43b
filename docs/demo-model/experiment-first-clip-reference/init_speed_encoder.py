"""The shipped stage-2 checkpoint with its speed encoder as the recipe's stage 1 initialises it under the
checked-out code (set_seed(seed), then the model build; stages 1 and 2 never train it). Run with
experiment.patch applied to get runs C and D's init; run on the unpatched code, the speed encoder it
builds equals the shipped stage-2 file's bit for bit (checked).
Usage: python init_speed_encoder.py OUT.safetensors   (repository root, PYTHONPATH=.)"""
import dataclasses
import sys

from accelerate.utils import set_seed
from safetensors import safe_open
from safetensors.torch import save_file

from emo_model.train.config import TrainConfig
from emo_model.train.setup import build_training_model

config = TrainConfig.from_file("configs/demo/stage1.json")
set_seed(config.seed)
model = build_training_model(config, dataclasses.replace(config.emo_config(), fps=25.0))
with safe_open("runs/demo/stage2/emo.safetensors", "pt") as f:
    metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
for key, value in model.speed_encoder.state_dict().items():
    state["speed_encoder." + key] = value.contiguous()
save_file(state, sys.argv[1], metadata=metadata)
