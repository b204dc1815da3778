"""Train on SD3's T5-less context at a fraction of its cost: 256 identical zero tokens computed as one.

Without a T5, ``StableDiffusion3Pipeline.encode_prompt`` appends ``max_sequence_length`` (256) zero tokens to the
CLIP tokens. In ``SD3Transformer2DModel`` text tokens carry no position, so those tokens stay identical through
every block (the context embedder, AdaLN, feed-forward and attention treat them alike), and in attention n
identical keys/values act as one key whose logit is raised by ln(n). ``RepeatedNullAttnProcessor`` does exactly
that: the training forward on (CLIP tokens + one zero token) equals the pipeline's forward on (CLIP tokens + 256
zero tokens) up to float rounding (tested), about 5x cheaper on 64 latent tokens. Sampling uses the stock
pipeline and processor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


class RepeatedNullAttnProcessor:
    """``JointAttnProcessor2_0`` whose last context token stands for ``repeats`` identical ones (log-count bias)."""

    def __init__(self, repeats: int):
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.repeats = repeats

    def _heads(self, attn: Attention, x: torch.Tensor, proj, norm) -> torch.Tensor:
        out = proj(x).unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (B, heads, N, head_dim)
        return norm(out) if norm is not None else out

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        n_image = hidden_states.shape[1]
        query = self._heads(attn, hidden_states, attn.to_q, attn.norm_q)
        key = self._heads(attn, hidden_states, attn.to_k, attn.norm_k)
        value = self._heads(attn, hidden_states, attn.to_v, None)
        ctx_q = self._heads(attn, encoder_hidden_states, attn.add_q_proj, attn.norm_added_q)
        ctx_k = self._heads(attn, encoder_hidden_states, attn.add_k_proj, attn.norm_added_k)
        ctx_v = self._heads(attn, encoder_hidden_states, attn.add_v_proj, None)
        query, key, value = (
            torch.cat(pair, dim=2) for pair in ((query, ctx_q), (key, ctx_k), (value, ctx_v))
        )
        bias = torch.zeros(key.shape[2], dtype=query.dtype, device=query.device)
        bias[-1] = math.log(self.repeats)  # the last key stands for `repeats` equal keys
        bias = bias.expand(query.shape[2], -1)  # (N_query, N_key), broadcast over batch and heads
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)  # (B, heads, N, head_dim)
        out = out.transpose(1, 2).flatten(2)  # (B, N, heads * head_dim)
        hidden_states, encoder_hidden_states = out[:, :n_image], out[:, n_image:]
        if not attn.context_pre_only:
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states, encoder_hidden_states
