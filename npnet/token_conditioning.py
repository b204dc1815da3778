"""Token-conditioned text path for NPNet: the prompt reaches every latent position (issue 21).

The official NPNet sees the prompt only through ``embeeding`` (diffusers' ``AdaGroupNorm`` over the
flattened 77xD embedding): **8 numbers**, a scale and a shift for each of the 4 latent channels, the same at
every position. Whatever is spatial in a prompt ("a red circle to the left of a blue square") has to pass
through them. ``TokenBranch`` removes that bottleneck: the latent is cut into ``grid x grid`` patches, each
patch (plus a learned position) is a query that attends to the other patches and to the prompt's tokens
(pre-norm transformer blocks: self-attention, cross-attention, MLP), and a zero-initialised head maps each
patch back to a change of the latent, either added (``"add"``) or as per-position FiLM of x_T (``"film"``:
x * scale + shift). At initialisation its output is exactly zero, so a token-conditioned NPNet starts as the
official one.

Only torch and einops: ``npnet.model`` builds it from ``NPNetConfig`` (``text_conditioning="tokens"``).
"""

from __future__ import annotations

import einops
import torch
from torch import nn

TEXT_CONDITIONINGS = ("official", "tokens", "tokens-no-text")
TOKEN_OUTPUTS = ("add", "film")


def check_token_options(text_conditioning: str, token_output: str) -> None:
    """ValueError naming the choices for an unknown ``text_conditioning`` or ``token_output``."""
    for name, value, choices in (
        ("text_conditioning", text_conditioning, TEXT_CONDITIONINGS),
        ("token_output", token_output, TOKEN_OUTPUTS),
    ):
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


class TokenBlock(nn.Module):
    """Pre-norm block: patches attend to each other, then to the prompt tokens, then an MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(x)  # (B, N, W)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm_cross(x)
        x = x + self.cross_attn(h, text, text, need_weights=False)[0]  # queries (B, N, W), keys (B, L, W)
        return x + self.mlp(self.norm_mlp(x))


class TokenBranch(nn.Module):
    """(x_T (B, C, S, S), prompt tokens (B, L, D)) -> a change of x_T (B, C, S, S), from patch-to-token attention."""

    def __init__(
        self,
        channels: int,
        latent_size: int,
        text_dim: int,
        width: int,
        layers: int,
        heads: int,
        grid: int,
        output: str = "add",
    ):
        super().__init__()
        if latent_size % grid:
            raise ValueError(f"token_grid={grid} must divide latent_size={latent_size}")
        if width % heads:
            raise ValueError(f"token_heads={heads} must divide token_width={width}")
        if output not in TOKEN_OUTPUTS:
            raise ValueError(f"unknown token_output {output!r}; choose one of {', '.join(TOKEN_OUTPUTS)}")
        self.grid, self.patch, self.output = grid, latent_size // grid, output
        patch_dim = channels * self.patch**2
        self.embed = nn.Linear(patch_dim, width)
        self.position = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        self.text_norm = nn.LayerNorm(text_dim)
        self.text_proj = nn.Linear(text_dim, width)
        self.blocks = nn.ModuleList(TokenBlock(width, heads) for _ in range(layers))
        self.norm_out = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_dim * (2 if output == "film" else 1))
        nn.init.zeros_(self.head.weight)  # starts as the official NPNet: zero change
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = einops.rearrange(
            x, "b c (g1 p1) (g2 p2) -> b (g1 g2) (c p1 p2)", p1=p, p2=p
        )  # (B, N, C p p)
        h = self.embed(patches) + self.position  # (B, N, W)
        text = self.text_proj(self.text_norm(tokens))  # (B, L, W)
        for block in self.blocks:
            h = block(h, text)
        out = self.head(self.norm_out(h))  # (B, N, C p p) or (B, N, 2 C p p)
        if self.output == "film":
            scale, shift = out.chunk(2, dim=-1)
            out = patches * scale + shift  # (B, N, C p p)
        return einops.rearrange(out, "b (g1 g2) (c p1 p2) -> b c (g1 p1) (g2 p2)", g1=self.grid, p1=p, p2=p)
