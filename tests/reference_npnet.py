"""The released NPNet forward recomputed independently in float64 (explicit loops and formulas), for parity tests.

``reference_svd_branch`` is Eq. 6 with the official 2x2 grid written out; ``reference_forward`` is the
official ``golden = svd(x) + (2 sigmoid(alpha) - 1) e + beta residual(x + e)`` with AdaGroupNorm written
out; the Swin residual branch is the module's own (its NHWC layout is checked in test_model.py).
"""

import copy
import math

import torch


def reference_svd_branch(net, x: torch.Tensor) -> torch.Tensor:
    """Independent float64 computation of the singular value branch with explicit loops."""
    m = net.unet_svd
    b, _, s_, _ = x.shape
    big = torch.zeros(b, 2 * s_, 2 * s_, dtype=torch.float64)
    for a in range(2):
        for c in range(2):
            big[:, a * s_ : (a + 1) * s_, c * s_ : (c + 1) * s_] = x[:, 2 * a + c]
    u, s, vh = torch.linalg.svd(big)

    def lin(layer, t):
        return t @ layer.weight.T + layer.bias

    def mlp(seq, t):
        return lin(seq[2], torch.relu(lin(seq[0], t)))

    out = mlp(m.mlp1, u.transpose(1, 2)) + mlp(m.mlp2, vh) + lin(m.mlp3[0], s)[:, None, :]
    heads, dim = m.attention.num_heads, out.shape[-1]
    qkv = out @ m.attention.qkv.weight.T  # (B, N, 3*dim)
    att = torch.zeros_like(out)
    hd = dim // heads
    for h in range(heads):
        q = qkv[..., h * hd : (h + 1) * hd]
        k = qkv[..., dim + h * hd : dim + (h + 1) * hd]
        v = qkv[..., 2 * dim + h * hd : 2 * dim + (h + 1) * hd]
        w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
        att[..., h * hd : (h + 1) * hd] = w @ v
    att = lin(m.attention.proj, att).mean(1)
    new_s = mlp(m.mlp4, att) + s
    pred = u @ torch.diag_embed(new_s) @ vh
    result = torch.zeros_like(x)
    for a in range(2):
        for c in range(2):
            result[:, 2 * a + c] = pred[:, a * s_ : (a + 1) * s_, c * s_ : (c + 1) * s_]
    return result


def reference_forward(net, noise: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """The official forward of ``net`` (native-size noise, 77-token embeddings) in float64."""
    ref = copy.deepcopy(net).double().eval()
    x, emb = noise.double(), embeds.double().expand(noise.shape[0], -1, -1)
    with torch.no_grad():
        lin = ref.embeeding.linear
        scale, shift = (emb.reshape(x.shape[0], -1) @ lin.weight.T + lin.bias).chunk(2, dim=1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        e = (x - mean) / torch.sqrt(var + 1e-6) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return (
            reference_svd_branch(ref, x)
            + (2 * torch.sigmoid(ref.alpha) - 1) * e
            + ref.beta * ref.unet_embedding(x + e)
        )
