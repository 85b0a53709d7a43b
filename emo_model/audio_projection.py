"""Audio windows → audio tokens per generated frame (the paper's audio feature A, projected).

Input per frame: the +-m frame window of all the encoder's hidden states, [2m+1, L, D]; an MLP
maps the flattened window to K tokens of the Backbone's audio width (Hallo/MEMO do the same).
"""
from __future__ import annotations

import torch
from torch import nn


class AudioProjection(nn.Module):
    def __init__(self, window: int, layers: int, dim: int, hidden: int, tokens: int, token_dim: int):
        super().__init__()
        self.tokens, self.token_dim = tokens, token_dim
        self.window_shape = (2 * window + 1, layers, dim)
        self.in_features = (2 * window + 1) * layers * dim
        self.mlp = nn.Sequential(
            nn.Linear(self.in_features, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, tokens * token_dim),
        )
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows: [..., 2m+1, L, D] → [prod(...), K, token_dim]."""
        if tuple(windows.shape[-3:]) != self.window_shape:
            raise ValueError(
                f"audio features of shape {tuple(windows.shape[-3:])} (window, layers, dim) do not match this "
                f"model's {self.window_shape}: use the audio encoder the model was trained with")
        flat = windows.reshape(-1, self.in_features).to(self.mlp[0].weight.dtype)
        return self.norm(self.mlp(flat).reshape(-1, self.tokens, self.token_dim))
