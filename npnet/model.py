"""NPNet, the noise prompt network: (x_T, prompt_embeds) -> golden x_T (paper Sec. 3.2, App. A.4).

The module reproduces the released checkpoints' function exactly, quirks included:

* ``unet_svd`` predicts singular values of the 4x128x128 noise rearranged to 256x256 (Eq. 6); for C
  latent channels the rearrangement is a k x k grid of channels with k^2 = C (2x2 for 4, 4x4 for the
  16-channel SD3 / Flux latents: 16x128x128 -> 512x512).
* ``unet_embedding`` predicts a residual with a Swin-T backbone.  timm >= 0.9 returns
  ``forward_features`` as NHWC ``(B, 7, 7, 768)``; the official code resizes that tensor *as if it
  were NCHW*, so the 7-long H axis acts as 7 channels (hence ``upconv`` is a 7 -> 4 1x1 conv).  The
  released weights learned this layout, so it is kept bit-for-bit.
* ``embeeding`` (sic, the checkpoint's key) is diffusers' ``AdaGroupNorm`` over the flattened prompt
  embedding (Eq. 7). For long T5 conditions (SD3: 333x4096, Flux: 512x4096) ``text_pool`` first
  mean-pools the tokens into that many contiguous groups (the released 77-token layouts: no pooling).
* ``golden = svd(x) + (2 sigmoid(alpha) - 1) e + beta residual(x + e)`` (Eq. 9 as released: (2σ(α)−1)·e where the paper writes α·e; Alg. 3 line 4).

Loading, saving and checkpoint formats live in ``npnet.checkpoints`` (``load_npnet``, ``save_npnet``,
``save_official``); this file is pure modules and imports nothing else of the project.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import einops
import timm
import torch
import torch.nn.functional as F
from diffusers.models.normalization import AdaGroupNorm
from torch import nn

from npnet.token_conditioning import TokenBranch, check_token_options

SIZE_STRATEGIES = ("nearest-exact", "bilinear", "residual", "reject")
# Text width D of the (77, D) condition -> (what the checkpoint is for, which models to choose).
# A checkpoint without a recorded family (the released ones) is told apart by this width only.
TEXT_FAMILIES: dict[int, tuple[str, str]] = {
    2048: ("an SDXL-family checkpoint (77x2048)", "an SDXL-family model (sdxl, dreamshaper-xl-v2-turbo, ...)"),
    1024: ("a Hunyuan-DiT checkpoint (77x1024)", "a DiT model (hunyuan-dit)"),
    768: ("a Stable Diffusion 1.5 checkpoint (77x768)", "a Stable Diffusion 1.5 model (sd15)"),
    4096: ("an SD3 / Flux checkpoint (T5, 4096 wide)", "an SD3.5 or Flux model (sd3.5-medium, flux-dev, ...)"),
    64: ("a micro / tiny-SDXL checkpoint (77x64)", "an offline SDXL-class model (micro, tiny-sdxl)"),
    32: ("a tiny Hunyuan-DiT checkpoint (77x32)", "a DiT model (tiny-hunyuan-dit)"),
    48: ("a tiny SD 1.5 checkpoint (77x48)", "an offline SD 1.5 model (tiny-sd15)"),
    96: ("a tiny SD3 checkpoint (333x96)", "an offline SD3 model (tiny-sd3)"),
    40: ("a tiny Flux checkpoint (512x40)", "an offline Flux model (tiny-flux)"),
}
# Released checkpoints carry no family: their (77, width) tells it (1024 is Hunyuan-DiT's, SD 2.1 NPNets
# are ours and record theirs).
LEGACY_FAMILIES: dict[int, str] = {2048: "sdxl", 1024: "hunyuan-dit"}
LONG_PROMPT_STRATEGIES = ("truncate", "chunk-mean")


@dataclass(frozen=True)
class NPNetConfig:
    """Architecture of one NPNet; presets below, inferred from checkpoints in ``npnet.checkpoints``."""

    text_dim: int
    text_len: int = 77
    latent_channels: int = 4
    latent_size: int = 128
    backbone: str = "swin_tiny_patch4_window7_224"
    backbone_img_size: int = 224
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()
    svd_hidden: int = 64
    svd_mlp4_hidden: int = 1024
    attn_heads: int = 8
    use_svd_branch: bool = True
    use_residual_branch: bool = True
    text_pool: int = 0  # mean-pool the text_len tokens into this many groups before AdaGroupNorm (0: none)
    family: str | None = None  # npnet.diffusion.families name it was trained for (None: by shape only)
    # Text path (npnet.token_conditioning): "official" (AdaGroupNorm only: 8 numbers per prompt), "tokens"
    # (+ a patch-to-token attention branch), "tokens-no-text" (the same network with the prompt zeroed).
    text_conditioning: str = "official"
    token_width: int = 64
    token_layers: int = 2
    token_heads: int = 4
    token_grid: int = 8  # patches per side of the native latent
    token_output: str = "add"  # "add" | "film"
    token_into_residual: bool = True  # the residual branch sees x + e + token change

    def __post_init__(self):
        if self.latent_channels not in (4, 16):
            raise ValueError(
                "NPNet's SVD branch rearranges C latent channels into a k x k grid (k^2 = C): 4 channels "
                f"(2x2: SD, SDXL, Hunyuan-DiT) or 16 (4x4: SD3, Flux); got {self.latent_channels} channels"
            )
        if self.svd_dim % self.attn_heads:
            raise ValueError(f"attn_heads={self.attn_heads} must divide the SVD width {self.svd_dim}")
        if not 0 <= self.text_pool <= self.text_len:
            raise ValueError(f"text_pool={self.text_pool} must be in [0, text_len={self.text_len}]")
        if self.uses_tokens and self.text_pool:
            raise ValueError("the token variants read every prompt token: use text_pool=0 with them")
        check_token_options(self.text_conditioning, self.token_output)
        if self.uses_tokens and (self.latent_size % self.token_grid or self.token_width % self.token_heads):
            raise ValueError(
                f"token_grid={self.token_grid} must divide latent_size={self.latent_size} and "
                f"token_heads={self.token_heads} must divide token_width={self.token_width}"
            )

    @property
    def svd_grid(self) -> int:
        """k of the k x k channel grid (k^2 = latent_channels)."""
        return math.isqrt(self.latent_channels)

    @property
    def uses_tokens(self) -> bool:
        """Whether the token branch exists (``text_conditioning`` other than "official")."""
        return self.text_conditioning != "official"

    @property
    def svd_dim(self) -> int:
        """Side of the rearranged square matrix: C x S x S -> (kS) x (kS) (4 channels: 2S)."""
        return self.latent_size * self.svd_grid

    @property
    def text_features(self) -> int:
        """Input width of the AdaGroupNorm: (text_pool or text_len) x text_dim."""
        return (self.text_pool or self.text_len) * self.text_dim

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["backbone_kwargs"] = [list(pair) for pair in self.backbone_kwargs]
        if not self.uses_tokens:  # official architecture: the metadata stays as before the token option
            data = {k: v for k, v in data.items() if k != "text_conditioning" and not k.startswith("token_")}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NPNetConfig:
        data = dict(data)
        kwargs = data.get("backbone_kwargs", ())
        data["backbone_kwargs"] = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_TINY_SWIN = (("embed_dim", 12), ("depths", (1, 1, 1, 1)), ("num_heads", (1, 1, 1, 1)), ("window_size", 2))
_MICRO_SWIN = (("embed_dim", 24), ("depths", (1, 1, 2, 1)), ("num_heads", (1, 2, 4, 8)), ("window_size", 4))

_TINY = NPNetConfig(
    text_dim=64,
    latent_size=8,
    backbone_img_size=64,
    backbone_kwargs=_TINY_SWIN,
    svd_hidden=8,
    svd_mlp4_hidden=32,
    attn_heads=2,
)

# The micro world's NPNet (see NPNET_PRESETS["micro"]); its token and flow variants change a few fields.
_MICRO = NPNetConfig(
    text_dim=64,
    latent_size=8,
    backbone_img_size=64,
    backbone_kwargs=_MICRO_SWIN,
    svd_hidden=32,
    svd_mlp4_hidden=128,
    attn_heads=4,
)

NPNET_PRESETS: dict[str, NPNetConfig] = {
    # SDXL, DreamShaper-xl-v2-turbo, SDXL-Lightning, LCM, PCM: CLIP-L + bigG concatenated, 77x2048.
    "sdxl": NPNetConfig(text_dim=2048, family="sdxl"),
    # Hunyuan-DiT: its 1024-wide CLIP-like (BERT) encoder, 77x1024.
    "dit": NPNetConfig(text_dim=1024, family="hunyuan-dit"),
    # The embedded offline micro world (npnet.worlds.micro): 64x64 px -> 4x8x8 latents, 32+32-wide CLIP text,
    # a small Swin so that training fits on a CPU; same class, same code paths as SDXL.
    "micro": _MICRO,
    # Token-conditioned variant of "micro" (issue 21): the prompt reaches each of the 8x8 latent positions.
    "micro-tokens": dataclasses.replace(_MICRO, text_conditioning="tokens"),
    # Its SDXL-sized config: 16x16 patches of 8x8 latent pixels attend to the 77x2048 prompt.
    "sdxl-tokens": NPNetConfig(
        text_dim=2048, text_conditioning="tokens", token_width=256, token_heads=8, token_grid=16
    ),
    # The offline micro flow world (npnet.worlds.micro_flow, StableDiffusion3Pipeline without T5): 16x8x8
    # latents (4x4 grid, 32x32 SVD) and the pipeline's own joint prompt_embeds: 16 CLIP tokens (32 + 32 wide)
    # ++ 256 zero tokens in T5's place = 272x64; not pooled (the zero tokens add nothing to AdaGroupNorm's
    # input, pooling would average the 16 caption tokens away). The same small Swin as "micro".
    "micro-flow": dataclasses.replace(_MICRO, text_len=272, latent_channels=16, family="sd3"),
    # Plumbing-only NPNet for the tiny offline pipelines (64x64 px -> 8x8 latents).
    "tiny": _TINY,
    # Families without a released NPNet (train your own: python -m cli collect / train). Shapes are those of
    # the pipelines' own encode_prompt (checked against the pipeline when loaded):
    # SD 1.5 at 512 px: 4x64x64 latents, CLIP ViT-L 77x768.
    "sd15": NPNetConfig(text_dim=768, latent_size=64, family="sd15"),
    # SD 2.1 at 768 px: 4x96x96 latents, OpenCLIP ViT-H 77x1024 (the sd15 family: StableDiffusionPipeline).
    "sd21": NPNetConfig(text_dim=1024, latent_size=96, family="sd15"),
    # SD3 / SD3.5 at 1024 px: 16x128x128 latents (4x4 grid, 512x512 SVD); joint prompt_embeds = CLIP-L+G
    # padded to 4096 (77 tokens) ++ T5 (256 tokens) = 333x4096, mean-pooled to 8x4096 before AdaGroupNorm.
    "sd3": NPNetConfig(
        text_dim=4096, text_len=333, latent_channels=16, latent_size=128, text_pool=8, family="sd3"
    ),
    # Flux at 1024 px: 16x128x128 unpacked latents; T5 prompt_embeds 512x4096 pooled to 8x4096.
    "flux": NPNetConfig(
        text_dim=4096, text_len=512, latent_channels=16, latent_size=128, text_pool=8, family="flux"
    ),
    # Their tiny offline pipelines (npnet.worlds.tiny; tests check these against encode_prompt).
    "tiny-sd15": dataclasses.replace(_TINY, text_dim=48, family="sd15"),
    "tiny-sd3": dataclasses.replace(_TINY, text_dim=96, text_len=333, latent_channels=16, text_pool=4, family="sd3"),
    "tiny-flux": dataclasses.replace(_TINY, text_dim=40, text_len=512, latent_channels=16, text_pool=4, family="flux"),
}


class SVDAttention(nn.Module):
    """timm-style multi-head self-attention (qkv without bias, output projection), paper Fig. 11."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = einops.rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, heads, N, N)
        out = einops.rearrange(attn @ v, "b h n d -> b n (h d)")
        return self.proj(out)


def _mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim_out))


class SingularValuePredictor(nn.Module):
    """Singular value prediction branch f(x_T) (Eq. 6): refine s, keep U and V."""

    def __init__(self, config: NPNetConfig):
        super().__init__()
        dim = config.svd_dim
        self.grid = config.svd_grid
        self.mlp1 = _mlp(dim, config.svd_hidden, dim)
        self.mlp2 = _mlp(dim, config.svd_hidden, dim)
        self.mlp3 = nn.Sequential(nn.Linear(dim, dim))
        self.attention = SVDAttention(dim, config.attn_heads)
        self.bn = nn.BatchNorm2d(dim)  # present in the released weights, unused in the forward
        self.mlp4 = _mlp(dim, config.svd_mlp4_hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.grid  # C = k * k channels; k = 2 for 4 channels, 4 for 16
        x = einops.rearrange(x, "b (a c) h w -> b (a h) (c w)", a=k, c=k)  # (B, C, S, S) -> (B, kS, kS)
        u, s, vh = torch.linalg.svd(x)  # (B, kS, kS), (B, kS), (B, kS, kS)
        out = self.mlp1(u.transpose(1, 2)) + self.mlp2(vh) + self.mlp3(s).unsqueeze(1)  # (B, kS, kS)
        out = self.attention(out).mean(1)  # (B, kS)
        out = self.mlp4(out) + s  # refined singular values, (B, kS)
        pred = u @ torch.diag_embed(out) @ vh  # (B, kS, kS)
        return einops.rearrange(pred, "b (a h) (c w) -> b (a c) h w", a=k, c=k)


class ResidualPredictor(nn.Module):
    """Residual prediction branch phi'(psi(phi(x))) with a Swin backbone (Eq. 7)."""

    def __init__(self, config: NPNetConfig):
        super().__init__()
        self.img_size = config.backbone_img_size
        self.latent_size = config.latent_size
        self.swin = timm.create_model(
            config.backbone,
            pretrained=False,
            img_size=config.backbone_img_size,
            **dict(config.backbone_kwargs),
        )
        feature_side = config.backbone_img_size // self.swin.feature_info[-1]["reduction"]
        self.downconv = nn.Conv2d(config.latent_channels, 3, kernel_size=1)
        self.upconv = nn.Conv2d(feature_side, config.latent_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=[self.img_size, self.img_size])  # (B, C, 224, 224), nearest
        feats = self.swin.forward_features(self.downconv(x))  # NHWC (B, 7, 7, 768)
        # Official quirk: resize the NHWC tensor as if NCHW, so H (=7) plays the channel axis.
        feats = F.interpolate(feats, size=[self.latent_size, self.latent_size])  # (B, 7, 128, 128)
        return self.upconv(feats)  # (B, C, 128, 128)


class NPNet(nn.Module):
    """Noise prompt network: ``golden = net(noise, prompt_embeds)`` (paper Alg. 3, line 4).

    ``noise`` is (B, C, H, W) (C = 4 or 16) in any float dtype and device; ``prompt_embeds`` is (B, L, D) or
    (1, L, D) (broadcast).  Computation runs in float32 (``torch.linalg.svd`` has no half kernels);
    the result has the noise's dtype and device.  Latents other than ``latent_size`` square follow
    ``size_strategy``; prompts longer than ``text_len`` tokens follow ``long_prompt``.
    """

    def __init__(
        self, config: NPNetConfig, size_strategy: str = "nearest-exact", long_prompt: str = "truncate"
    ):
        super().__init__()
        _check_choice("size_strategy", size_strategy, SIZE_STRATEGIES)
        _check_choice("long_prompt", long_prompt, LONG_PROMPT_STRATEGIES)
        self.config = config
        self.size_strategy = size_strategy
        self.long_prompt = long_prompt
        if config.use_svd_branch:
            self.unet_svd = SingularValuePredictor(config)
        if config.use_residual_branch:
            self.unet_embedding = ResidualPredictor(config)
        self.embeeding = AdaGroupNorm(config.text_features, config.latent_channels, 1, eps=1e-6)
        if config.uses_tokens:
            self.token_branch = TokenBranch(
                config.latent_channels,
                config.latent_size,
                config.text_dim,
                config.token_width,
                config.token_layers,
                config.token_heads,
                config.token_grid,
                config.token_output,
            )
        self.alpha = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: NPNetConfig | str, init: str = "random", **options) -> NPNet:
        """Build an NPNet; ``init="imagenet"`` loads timm's ImageNet Swin-T (paper App. A.4; training from
        scratch; ``npnet.training.pretrained`` checks the architecture and an offline hub first)."""
        config = NPNET_PRESETS[config] if isinstance(config, str) else config
        _check_choice("init", init, ("random", "imagenet"))
        net = cls(config, **options)
        if init == "imagenet" and config.use_residual_branch:
            pretrained = timm.create_model(
                config.backbone,
                pretrained=True,
                img_size=config.backbone_img_size,
                **dict(config.backbone_kwargs),
            )
            net.unet_embedding.swin.load_state_dict(pretrained.state_dict())
        return net

    # -- forward ------------------------------------------------------------------------------
    @property
    def param_dtype(self) -> torch.dtype:
        return self.alpha.dtype

    def forward(self, noise: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        self._check_noise(noise)
        x = noise.to(device=self.alpha.device, dtype=self.param_dtype)  # (B, C, H, W)
        cond = self.condition(prompt_embeds, batch=x.shape[0])  # (B, (P|L)*D)
        native = self._to_native(x)  # (B, C, S, S)
        golden = self.golden(native, cond)
        return self._from_native(golden, native, x).to(device=noise.device, dtype=noise.dtype)

    def golden(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Eq. 9 as released: (2σ(α)−1)·e (the paper: α·e), i.e. x'_T = f(x_T) + (2 sigmoid(alpha) - 1) e
        + beta g(x_T + e), at the native size; the token variants add their branch's change t
        (``golden_tokens``)."""
        if self.config.uses_tokens:
            return self.golden_tokens(x, cond)
        e = self.embeeding(x, cond)  # (B, C, S, S)
        out = self.unet_svd(x) if self.config.use_svd_branch else x
        out = out + (2 * torch.sigmoid(self.alpha) - 1) * e
        if self.config.use_residual_branch:
            out = out + self.beta * self.unet_embedding(x + e)
        return out

    def golden_tokens(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x'_T = f(x_T) + (2 sigmoid(alpha) - 1) e + t + beta g(x_T + e [+ t]), t = TokenBranch(x_T, tokens);
        "tokens-no-text" zeroes the prompt (the same network, no text information)."""
        cfg = self.config
        if cfg.text_conditioning == "tokens-no-text":
            cond = torch.zeros_like(cond)
        tokens = einops.rearrange(cond, "b (l d) -> b l d", l=cfg.text_len)  # (B, 77, D)
        e = self.embeeding(x, cond)  # (B, 4, S, S)
        t = self.token_branch(x, tokens)  # (B, 4, S, S)
        out = self.unet_svd(x) if cfg.use_svd_branch else x
        out = out + (2 * torch.sigmoid(self.alpha) - 1) * e + t
        if cfg.use_residual_branch:
            out = out + self.beta * self.unet_embedding(x + e + t if cfg.token_into_residual else x + e)
        return out

    def condition(self, prompt_embeds: torch.Tensor, batch: int) -> torch.Tensor:
        """Flatten (B|1, L, D) prompt embeddings to (B, L*D) (or (B, P*D) pooled), handling long prompts."""
        cfg = self.config
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != cfg.text_dim:
            raise ValueError(_text_dim_message(tuple(prompt_embeds.shape), cfg.text_dim))
        emb = prompt_embeds.to(device=self.alpha.device, dtype=self.param_dtype)
        emb = self._fit_length(emb)  # (B|1, L, D)
        if cfg.text_pool:  # contiguous token groups, mean of each: (B|1, P, D)
            emb = F.adaptive_avg_pool1d(emb.transpose(1, 2), cfg.text_pool).transpose(1, 2)
        if emb.shape[0] == 1 and batch > 1:
            emb = emb.expand(batch, -1, -1)
        if emb.shape[0] != batch:
            raise ValueError(
                f"prompt_embeds batch {emb.shape[0]} does not match the noise batch {batch}: "
                "pass one embedding per noise or a single (1, L, D) to broadcast"
            )
        return emb.reshape(batch, -1)

    def _fit_length(self, emb: torch.Tensor) -> torch.Tensor:
        n = self.config.text_len
        if emb.shape[1] < n:
            raise ValueError(
                f"prompt_embeds has {emb.shape[1]} tokens; NPNet needs {n} (pad the prompt "
                "to the tokenizer's max length, as diffusers' encode_prompt does)"
            )
        if emb.shape[1] == n:
            return emb
        if self.long_prompt == "truncate":
            return emb[:, :n]
        if emb.shape[1] % n:
            raise ValueError(
                f"chunk-mean needs a multiple of {n} tokens (one chunk per {n}); got {emb.shape[1]}"
            )
        return einops.reduce(emb, "b (k n) d -> b n d", "mean", n=n)  # (B, 77, D)

    def _check_noise(self, noise: torch.Tensor) -> None:
        if noise.ndim != 4:
            raise ValueError(f"noise must be a (B, C, H, W) latent; got shape {tuple(noise.shape)}")
        if noise.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"this NPNet works on {self.config.latent_channels}-channel latents (4: SD, SDXL, Hunyuan-DiT;"
                f" 16: SD3, Flux); got {noise.shape[1]} channels in shape {tuple(noise.shape)}. Use the NPNet"
                " trained for this model"
            )
        if not noise.is_floating_point():
            raise ValueError(f"noise must be a float tensor, got {noise.dtype}")

    def _to_native(self, x: torch.Tensor) -> torch.Tensor:
        side = self.config.latent_size
        if tuple(x.shape[-2:]) == (side, side):
            return x
        if self.size_strategy == "reject":
            raise ValueError(
                f"this NPNet was trained on {side}x{side} latents ({side * 8} px); got "
                f"{tuple(x.shape[-2:])}. Use size_strategy='nearest-exact', 'bilinear' or "
                "'residual' to resize, or generate at the native size"
            )
        return F.interpolate(x, size=(side, side), **_interp(self.size_strategy))

    def _from_native(self, golden: torch.Tensor, native: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        if tuple(golden.shape[-2:]) == size:
            return golden
        if self.size_strategy == "residual":  # keep x_T exactly, resize only NPNet's correction
            return x + F.interpolate(golden - native, size=size, **_interp("bilinear"))
        return F.interpolate(golden, size=size, **_interp(self.size_strategy))


def _interp(strategy: str) -> dict[str, Any]:
    if strategy in ("bilinear", "residual"):
        return {"mode": "bilinear", "align_corners": False}
    return {"mode": "nearest-exact"}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def describe_text_width(width: int) -> str:
    """What a (77, width) NPNet condition belongs to, for error messages."""
    return TEXT_FAMILIES.get(width, (f"a checkpoint for {width}-wide text", ""))[0]


def models_for_text_width(width: int) -> str:
    """Which diffusion models produce a (77, width) condition, for error messages."""
    return TEXT_FAMILIES.get(width, ("", f"a model with {width}-wide prompt embeddings"))[1]


def _text_dim_message(shape: tuple[int, ...], expected: int) -> str:
    got = shape[-1] if len(shape) == 3 else None
    hint = f" - that width is {describe_text_width(got)}" if got in TEXT_FAMILIES else ""
    return (
        f"prompt_embeds must be (B, L, {expected}) for this NPNet ({describe_text_width(expected)}); "
        f"got {shape}{hint}. Use the NPNet checkpoint that matches the diffusion model"
    )
