"""The SD-style UNet shared by Backbone and ReferenceNet, in diffusers `UNet2DConditionModel` keys.

Built from diffusers parts (ResnetBlock2D, Downsample2D, Upsample2D, timestep embedding) with
EMO blocks in place of the transformer layers, and temporal modules at the places AnimateDiff
puts them (after each resnet/attention pair, and in the mid block after its attention). The
ReferenceNet is the same network without temporal, audio or reference layers; it records the
input of every attn1 (reference features) and the hidden state at every temporal slot (motion
features), so the Backbone reads features of exactly matching layers.
"""
from __future__ import annotations

import itertools

import torch
from torch.utils.checkpoint import checkpoint
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from torch import nn

from .conditioning import Conditioning, FeatureCapture, expand_batch
from .config import UNetGeometry
from .spatial import SpatialTransformer
from .temporal import TemporalTransformer


class _Level(nn.Module):
    """A down or up level: resnet → attention → temporal slot, per layer."""

    def __init__(self, resnets, attentions, motion_modules):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        if motion_modules:
            self.motion_modules = nn.ModuleList(motion_modules)

    def layer(self, j, x, temb, cond, capture):
        x = self.resnets[j](x, temb)
        if hasattr(self, "attentions"):
            x = self.attentions[j](x, cond, capture)
        return _temporal_slot(self, j, x, cond, capture)


def _temporal_slot(block: nn.Module, j: int, x, cond: Conditioning, capture: FeatureCapture | None):
    if capture is not None and capture.temporal is not None:
        capture.temporal.append(x)
    if hasattr(block, "motion_modules") and cond.temporal:
        x = block.motion_modules[j](x, cond)
    return x


class EMOUNet(nn.Module):
    def __init__(self, g: UNetGeometry, *, temporal: bool, reference_mode: str | None = None,
                 audio_token_dim: int | None = None, speed_dim: int | None = None):
        super().__init__()
        self.geometry = g
        ch = g.block_out_channels
        temb_dim = ch[0] * 4
        attn_index = itertools.count()
        slot_index = itertools.count()

        def resnet(cin, cout):
            return ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=temb_dim,
                                 groups=g.norm_num_groups, eps=1e-5)

        def attention(c):
            return SpatialTransformer(c, g.heads, g.norm_num_groups, g.cross_attention_dim, next(attn_index),
                                      reference_mode=reference_mode, audio_token_dim=audio_token_dim)

        def motion(c):
            index = next(slot_index)  # every slot is numbered, so ReferenceNet and Backbone agree
            if not temporal:
                return None
            return TemporalTransformer(c, g.motion_heads, g.norm_num_groups, g.motion_max_frames, index, speed_dim)

        self.conv_in = nn.Conv2d(g.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(ch[0], temb_dim)

        self.down_blocks = nn.ModuleList()
        cin = ch[0]
        for i, (cout, attn) in enumerate(zip(ch, g.attention_levels)):
            layers = range(g.layers_per_block)
            resnets = [resnet(cin if j == 0 else cout, cout) for j in layers]
            attentions = [attention(cout) for _ in layers] if attn else []
            motions = [motion(cout) for _ in layers]
            level = _Level(resnets, attentions, [m for m in motions if m is not None])
            if i < len(ch) - 1:
                level.downsamplers = nn.ModuleList([Downsample2D(cout, use_conv=True, out_channels=cout, padding=1, name="op")])
            self.down_blocks.append(level)
            cin = cout

        mid = ch[-1]
        self.mid_block = _Level([resnet(mid, mid), resnet(mid, mid)], [attention(mid)],
                                [m for m in [motion(mid)] if m is not None])

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        prev = rev[0]
        for i, (cout, attn) in enumerate(zip(rev, reversed(g.attention_levels))):
            skip_in = rev[min(i + 1, len(ch) - 1)]
            layers = range(g.layers_per_block + 1)
            resnets = [resnet((prev if j == 0 else cout) + (skip_in if j == g.layers_per_block else cout), cout)
                       for j in layers]
            attentions = [attention(cout) for _ in layers] if attn else []
            motions = [motion(cout) for _ in layers]
            level = _Level(resnets, attentions, [m for m in motions if m is not None])
            if i < len(ch) - 1:
                level.upsamplers = nn.ModuleList([Upsample2D(cout, use_conv=True, out_channels=cout)])
            self.up_blocks.append(level)
            prev = cout

        self.conv_norm_out = nn.GroupNorm(g.norm_num_groups, ch[0], eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], g.out_channels, 3, padding=1)
        # attn2 context: EMO has no text; one learned token, zero at start (= SD1.5 with a zero text embedding).
        self.context = nn.Parameter(torch.zeros(1, 1, g.cross_attention_dim))
        self.num_attention_blocks = next(attn_index)
        self.num_temporal_slots = next(slot_index)
        self.gradient_checkpointing = False

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Training only: recompute each resnet/attention/temporal layer in the backward pass instead of
        keeping its activations (less memory, ~30 % more compute). Outputs and gradients are unchanged."""
        self.gradient_checkpointing = enabled

    def _layer(self, level: _Level, j: int, x, temb, cond: Conditioning, capture: FeatureCapture | None):
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return level.layer(j, x, temb, cond, capture)
        # The backward pass re-runs the layer; its captures go to a throw-away list then, so each
        # ReferenceNet feature is recorded once (the first run's tensors are the ones in the graph).
        runs = []

        def run(x, temb):
            local = None if capture is None else FeatureCapture(
                spatial=None if capture.spatial is None else [], temporal=None if capture.temporal is None else [])
            runs.append(local)
            return level.layer(j, x, temb, cond, local)

        x = checkpoint(run, x, temb, use_reentrant=False)
        if capture is not None:
            for name in ("spatial", "temporal"):
                if getattr(capture, name) is not None:
                    getattr(capture, name).extend(getattr(runs[0], name))
        return x

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, cond: Conditioning | None = None,
                added_features: torch.Tensor | None = None, capture: FeatureCapture | None = None) -> torch.Tensor:
        """sample: [B*F, C, h, w] (batch-major frames). added_features: Face Locator output, [B or 1, C0, h, w]."""
        cond = cond or Conditioning()
        cond.context = self.context
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(sample.shape[0])
        elif timestep.shape[0] != sample.shape[0]:
            timestep = timestep.repeat_interleave(sample.shape[0] // timestep.shape[0])
        temb = self.time_embedding(self.time_proj(timestep).to(sample.dtype))

        x = self.conv_in(sample)
        if added_features is not None:
            x = x + expand_batch(added_features.to(x.dtype), x.shape[0])
        skips = [x]
        for level in self.down_blocks:
            for j in range(len(level.resnets)):
                x = self._layer(level, j, x, temb, cond, capture)
                skips.append(x)
            if hasattr(level, "downsamplers"):
                x = level.downsamplers[0](x)
                skips.append(x)

        mid = self.mid_block
        x = mid.resnets[0](x, temb)
        x = mid.attentions[0](x, cond, capture)
        x = _temporal_slot(mid, 0, x, cond, capture)
        x = mid.resnets[1](x, temb)

        for level in self.up_blocks:
            for j in range(len(level.resnets)):
                x = self._layer(level, j, torch.cat([x, skips.pop()], dim=1), temb, cond, capture)
            if hasattr(level, "upsamplers"):
                x = level.upsamplers[0](x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))
