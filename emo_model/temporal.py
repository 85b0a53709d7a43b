"""AnimateDiff-style temporal module (diffusers `MotionAdapter` key layout) with EMO's additions.

- Motion frames: the n motion-frame features of the matching resolution are concatenated in front
  of the f generated frames along the frame axis, the whole n + f sequence goes through the module
  (norm, attention along frames, feed-forward), and only the f generated frames are kept. With no
  motion features given but `num_motion > 0` the n frames are zero maps (the first clip). Nothing
  here depends on train/eval mode.
- Speed layers: a zero-initialised cross-attention from every (position, frame) token to the
  clip's speed tokens, inside each temporal block.
"""
from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import nn

from .conditioning import Conditioning, expand_batch
from .spatial import zero_init_


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int | None):
        super().__init__()
        dim_head = dim // heads
        self.pos_embed = SinusoidalPositionalEmbedding(dim, max_seq_length=max_frames)
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, dim_head=dim_head, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads=heads, dim_head=dim_head, bias=False)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        if speed_dim is not None:
            self.speed_norm = nn.LayerNorm(dim)
            self.speed_attn = zero_init_(Attention(dim, cross_attention_dim=speed_dim, heads=heads, dim_head=dim_head))

    def forward(self, h: torch.Tensor, speed: torch.Tensor | None, batch: int) -> torch.Tensor:
        h = h + self.attn1(self.pos_embed(self.norm1(h)))
        h = h + self.attn2(self.pos_embed(self.norm2(h)))
        if speed is not None and hasattr(self, "speed_attn"):
            # Speed tokens are the same for every position: attend per sample with all
            # positions' frame tokens as one query sequence instead of copying the keys H*W times.
            rows, frames, dim = h.shape
            q = self.pos_embed(self.speed_norm(h)).reshape(batch, rows // batch * frames, dim)
            out = self.speed_attn(q, encoder_hidden_states=speed.to(h.dtype))
            h = h + out.reshape(rows, frames, dim)
        return h + self.ff(self.norm3(h))


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, groups: int, max_frames: int, index: int, speed_dim: int | None):
        super().__init__()
        self.index = index  # position of this slot in FeatureCapture.temporal / Conditioning.motion
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalBlock(channels, heads, max_frames, speed_dim)])
        self.proj_out = nn.Linear(channels, channels)
        # AnimateDiff initialises the output projection to zero: a fresh module is an identity.
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        frames = cond.num_frames
        batch = x.shape[0] // frames
        _, c, height, width = x.shape
        video = x.reshape(batch, frames, c, height, width)
        n = cond.num_motion
        if n:
            if cond.motion is not None:
                motion = expand_batch(cond.motion[self.index].to(x.dtype), batch)
                if cond.motion_keep is not None and not bool(cond.motion_keep.all()):  # dropped rows: zero maps
                    motion = motion * cond.motion_keep.to(motion).view(batch, 1, 1, 1, 1)
            else:
                motion = x.new_zeros(batch, n, c, height, width)
            video = torch.cat([motion, video], dim=1)
        total = n + frames
        h = self.norm(video.transpose(1, 2))  # GroupNorm over (C, T, H, W) as AnimateDiff does
        h = h.permute(0, 3, 4, 2, 1).reshape(batch * height * width, total, c)
        h = self.proj_in(h)
        speed = None if cond.speed is None else expand_batch(cond.speed, batch)
        for block in self.transformer_blocks:
            h = block(h, speed, batch)
        h = self.proj_out(h).reshape(batch, height, width, total, c).permute(0, 3, 4, 1, 2)
        out = (h + video)[:, n:]
        return out.reshape(batch * frames, c, height, width)
