"""Spatial transformer of Backbone and ReferenceNet, in diffusers `Transformer2DModel` key layout.

Each block is SD1.5's (attn1, attn2, ff) plus EMO's conditioning:
- reference-attention: attn1 attends to [own tokens ; ReferenceNet tokens of the same block]
  ("concat", SD1.5 attn1 weights reused), or a separate zero-initialised cross-attention ("cross");
- audio-attention: a zero-initialised cross-attention to the frame's audio tokens, right after
  reference-attention;
- attn2 keeps SD1.5's cross-attention weights with a learned context instead of text (EMO has no
  text); its context starts at zero, which is SD1.5 conditioned on an all-zero text embedding.
"""
from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .conditioning import Conditioning, FeatureCapture, batch_gate, expand_batch


def zero_init_(attention: Attention) -> Attention:
    """New layers start as identity residuals: the pretrained network's output is unchanged."""
    nn.init.zeros_(attention.to_out[0].weight)
    nn.init.zeros_(attention.to_out[0].bias)
    return attention


class EMOTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, cross_attention_dim: int, index: int, *,
                 reference_mode: str | None, audio_token_dim: int | None):
        super().__init__()
        self.index = index  # position of this block's entry in FeatureCapture.spatial / Conditioning.reference
        self.reference_mode = reference_mode
        dim_head = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, dim_head=dim_head, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, heads=heads, dim_head=dim_head, bias=False)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        if reference_mode == "cross":
            self.ref_norm = nn.LayerNorm(dim)
            self.ref_attn = zero_init_(Attention(dim, cross_attention_dim=dim, heads=heads, dim_head=dim_head))
        if audio_token_dim is not None:
            self.audio_norm = nn.LayerNorm(dim)
            self.audio_attn = zero_init_(
                Attention(dim, cross_attention_dim=audio_token_dim, heads=heads, dim_head=dim_head))

    def forward(self, x: torch.Tensor, cond: Conditioning, capture: FeatureCapture | None) -> torch.Tensor:
        rows = x.shape[0]
        h = self.norm1(x)
        if capture is not None and capture.spatial is not None:
            capture.spatial.append(h)
        reference = None
        if self.reference_mode is not None and cond.reference is not None:
            reference = expand_batch(cond.reference[self.index].to(h.dtype), rows)

        if reference is not None and self.reference_mode == "concat":
            x = x + self.attn1(h, encoder_hidden_states=torch.cat([h, reference], dim=1),
                               attention_mask=self._reference_mask(cond, rows, h, reference.shape[1]))
        else:
            x = x + self.attn1(h)
        if reference is not None and self.reference_mode == "cross":
            out = self.ref_attn(self.ref_norm(x), encoder_hidden_states=reference)
            gate = batch_gate(cond.reference_keep, rows, out)
            x = x + (out if gate is None else out * gate)
        if cond.audio is not None and hasattr(self, "audio_attn"):
            audio = cond.audio.to(x.dtype)
            if audio.shape[0] != rows:  # one sample's frames, shared by every guidance branch
                audio = audio.repeat(rows // audio.shape[0], 1, 1)
            out = self.audio_attn(self.audio_norm(x), encoder_hidden_states=audio)
            gate = batch_gate(cond.audio_keep, rows, out)
            x = x + (out if gate is None else out * gate)
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=cond.context.expand(rows, -1, -1).to(x.dtype))
        return x + self.ff(self.norm3(x))

    @staticmethod
    def _reference_mask(cond: Conditioning, rows: int, h: torch.Tensor, ref_len: int) -> torch.Tensor | None:
        """Additive key mask hiding the reference tokens from samples whose reference is dropped."""
        gate = batch_gate(cond.reference_keep, rows, h)
        if gate is None:
            return None
        mask = torch.zeros(rows, 1, h.shape[1] + ref_len, dtype=h.dtype, device=h.device)
        mask[:, :, h.shape[1]:] = torch.where(gate > 0, 0.0, float("-inf")).to(h.dtype)
        return mask


class SpatialTransformer(nn.Module):
    """`Transformer2DModel` (SD1.5: conv proj_in/proj_out, one block) with EMO blocks inside."""

    def __init__(self, channels: int, heads: int, groups: int, cross_attention_dim: int, index: int, **block_kwargs):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [EMOTransformerBlock(channels, heads, cross_attention_dim, index, **block_kwargs)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cond: Conditioning, capture: FeatureCapture | None) -> torch.Tensor:
        n, c, height, width = x.shape
        h = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(n, height * width, c)
        for block in self.transformer_blocks:
            h = block(h, cond, capture)
        h = h.reshape(n, height, width, c).permute(0, 3, 1, 2)
        return self.proj_out(h) + x
