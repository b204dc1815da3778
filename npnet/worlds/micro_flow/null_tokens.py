"""SD3's T5-less context at a fraction of its cost: a run of identical context tokens computed as one.

Without a T5, ``StableDiffusion3Pipeline.encode_prompt`` appends ``max_sequence_length`` (256) zero tokens to the
CLIP tokens. In ``SD3Transformer2DModel`` text tokens carry no position, so identical context tokens stay
identical through every block (the context embedder, AdaLN, feed-forward and attention treat them alike), and in
attention n identical keys/values act as one key whose logit is raised by ln(n). ``compress_null_runs`` installs
exactly that on a transformer: a forward pre-hook keeps one token of the trailing run of identical context tokens
and passes the run length to ``RepeatedNullAttnProcessor``, which adds ln(n) to that key. The transformer's output
(image tokens only) equals the stock forward up to float rounding, for any context (tested; a run of one is the
stock attention), about 9x cheaper on 16 CLIP + 256 zero tokens and 16 latent tokens. The pipeline, its
``encode_prompt``, scheduler and call stay diffusers' own; the hook and processor are diffusers' extension points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


class RepeatedNullAttnProcessor:
    """``JointAttnProcessor2_0`` whose last context token stands for ``null_repeats`` identical ones (ln bias)."""

    def _heads(self, attn: Attention, x: torch.Tensor, proj, norm) -> torch.Tensor:
        out = proj(x).unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (B, heads, N, head_dim)
        return norm(out) if norm is not None else out

    def __call__(
        self,
        attn: Attention,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        null_repeats: int = 1,
    ):
        if null_repeats < 1:
            raise ValueError(f"null_repeats must be >= 1, got {null_repeats}")
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
        bias[-1] = math.log(null_repeats)  # the last key stands for `null_repeats` equal keys
        bias = bias.expand(query.shape[2], -1)  # (N_query, N_key), broadcast over batch and heads
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)  # (B, heads, N, head_dim)
        out = out.transpose(1, 2).flatten(2)  # (B, N, heads * head_dim)
        hidden_states, encoder_hidden_states = out[:, :n_image], out[:, n_image:]
        if not attn.context_pre_only:
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states, encoder_hidden_states


def trailing_run(context: torch.Tensor) -> int:
    """Length of the run of context tokens equal to the last one, in every batch row: ``(B, N, D) -> int``."""
    same = (context == context[:, -1:]).all(dim=-1).all(dim=0)  # (N,)
    return int(same.flip(0).int().cumprod(0).sum())


def _compress_hook(module, args, kwargs):
    context = kwargs.get("encoder_hidden_states")
    if context is None or context.shape[1] < 2:
        return args, kwargs
    run = trailing_run(context)
    kwargs["encoder_hidden_states"] = context[
        :, : context.shape[1] - run + 1
    ].contiguous()  # (B, N - run + 1, D)
    kwargs["joint_attention_kwargs"] = {**(kwargs.get("joint_attention_kwargs") or {}), "null_repeats": run}
    return args, kwargs


def compress_null_runs(transformer: torch.nn.Module) -> torch.nn.Module:
    """Install the run compression on an ``SD3Transformer2DModel`` (keyword ``encoder_hidden_states``, as the
    pipeline calls it); returns the transformer."""
    transformer.set_attn_processor(RepeatedNullAttnProcessor())
    transformer.register_forward_pre_hook(_compress_hook, with_kwargs=True)
    return transformer
