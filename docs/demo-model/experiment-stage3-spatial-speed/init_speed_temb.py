"""Runs C/D's stage-2 init plus the zero-initialised speed -> timestep-embedding layer of speed_temb.patch
(EMO_SPEED_TEMB=1). Usage: python init_speed_temb.py IN.safetensors OUT.safetensors (repository root)"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

with safe_open(sys.argv[1], "pt") as f:
    metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
speed_dim, temb_dim = state["speed_encoder.mlp.2.weight"].shape[0], state["backbone.time_embedding.linear_2.weight"].shape[0]
state["backbone.speed_temb.weight"] = torch.zeros(temb_dim, speed_dim)
state["backbone.speed_temb.bias"] = torch.zeros(temb_dim)
save_file(state, sys.argv[2], metadata=metadata)
