"""Launch configuration of the app: a frozen dataclass, its argparse CLI, and environment detection."""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from npnet.diffusion.loading import unavailable_reason
from npnet.diffusion.presets import MODEL_PRESETS, hub_offline
from npnet.errors import OneLineParser, UserError
from npnet.paths import PROJECT_ROOT
from studio.auth import Account, accounts, auth_argument

OFFLINE_FALLBACK = "tiny-sdxl"
ONLINE_DEFAULT = "sdxl"
CACHE_MODES = ("auto", "eager", "lazy", "off")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LaunchConfig:
    """How ``python app.py`` serves the studio; ``None`` fields are resolved from the environment."""

    model: str | None = None  # default: default_model(offline, has_gpu)
    npnet: str | None = None  # NPNet checkpoint override for the default model
    device: str = "auto"
    dtype: str | None = None
    share: bool = False
    host: str | None = None  # default: 0.0.0.0 on Spaces, else 127.0.0.1
    port: int | None = None  # default: GRADIO_SERVER_PORT or 7860
    auth: tuple[Account, ...] = ()  # (user, password) pairs: --auth (repeatable) and --auth-file
    queue_size: int = 16
    offline: bool | None = None  # None: offline when HF_HUB_OFFLINE is set or the hub is unreachable
    allow_training: bool = False  # needed on shared deployments (share, Spaces, non-loopback host)
    max_eval_prompts: int | None = None  # None: 8 on shared deployments, unlimited locally
    max_seeds: int = 32
    temp_dir: str | None = None  # None: a fresh directory under the system temp dir, removed at exit
    runs_dir: str = "runs/app"
    cache_examples: str = "auto"  # auto: eager for offline models (cheap), lazy for hub models
    cpu_offload: bool = False
    max_upload_mb: int = 200
    max_loaded_models: int = 1  # pipelines kept in memory (least recently used one goes first)
    max_train_pairs: int = 256  # noise pairs one Train-tab run may collect
    max_sessions: int = 200  # visitors' sessions (their current pair, updated fields) kept in memory
    allow_npnet: tuple[str, ...] = ()  # NPNet specs (paths, hub ids) a shared app's visitors may type
    publish: tuple[str, ...] = ()  # evaluation run folders and NPNet checkpoints every visitor sees

    def __post_init__(self):
        if self.cache_examples not in CACHE_MODES:
            raise UserError(f"cache_examples must be one of {', '.join(CACHE_MODES)}")
        for name in ("queue_size", "max_seeds", "max_upload_mb", "max_loaded_models", "max_train_pairs", "max_sessions"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.max_eval_prompts is not None and self.max_eval_prompts < 1:
            raise UserError("max_eval_prompts must be >= 1")

    @property
    def on_spaces(self) -> bool:
        return bool(os.environ.get("SPACE_ID"))

    @property
    def server_name(self) -> str:
        return self.host or ("0.0.0.0" if self.on_spaces else "127.0.0.1")

    @property
    def server_port(self) -> int:
        return self.port or int(os.environ.get("GRADIO_SERVER_PORT", "7860"))

    @property
    def shared(self) -> bool:
        """Other people can reach this server: --share, a Space, or a non-loopback host."""
        return self.share or self.on_spaces or self.server_name not in LOOPBACK

    @property
    def training_enabled(self) -> bool:
        return self.allow_training or not self.shared

    @property
    def eval_prompt_cap(self) -> int | None:
        if self.max_eval_prompts is not None:
            return self.max_eval_prompts
        return 8 if self.shared else None

    @property
    def runs_path(self) -> Path:
        path = Path(self.runs_dir)
        return path if path.is_absolute() else PROJECT_ROOT / path


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT) accepts a TCP connection within ``timeout`` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_offline(config: LaunchConfig) -> bool:
    """--offline, else HF_HUB_OFFLINE, else whether the hub is unreachable."""
    if config.offline is not None:
        return config.offline
    return hub_offline() or not hub_reachable()


OFFLINE_DEFAULTS = ("micro-turbo", "micro")  # few steps, where golden noise rescues seeds; then 20 steps


def micro_available(name: str) -> bool:
    """The micro world's shipped generator and the preset's NPNet exist."""
    return unavailable_reason(MODEL_PRESETS[name]) is None


def default_model(offline: bool, has_gpu: bool) -> str:
    """SDXL with the official NPNet on a GPU with hub access; else micro-turbo (then micro, then tiny-sdxl)."""
    if has_gpu and not offline:
        return ONLINE_DEFAULT
    return next((name for name in OFFLINE_DEFAULTS if micro_available(name)), OFFLINE_FALLBACK)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = LaunchConfig()
    p = OneLineParser(description="NPNet Studio: golden noise for diffusion models, side by side")
    p.add_argument(
        "--model", default=None, help="model preset (default: sdxl on a GPU with hub, else offline)"
    )
    p.add_argument("--npnet", default=None, help="NPNet checkpoint for the default model (path or hub id)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--host", default=None, help="server host (default 127.0.0.1; 0.0.0.0 on Spaces)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument(
        "--auth", type=auth_argument, action="append", default=[], metavar="USER:PASS",
        help="an account that may log in (repeatable); with any account every route needs a login",
    )  # fmt: skip
    p.add_argument(
        "--auth-file", default=None, metavar="FILE",
        help="accounts, one user:password a line (must not be world-readable: chmod 600)",
    )  # fmt: skip
    p.add_argument("--queue-size", type=_positive_int, default=d.queue_size, help="max queued requests")
    p.add_argument("--offline", action="store_true", default=None, help="never contact the hub")
    p.add_argument("--allow-training", action="store_true", help="enable the Train tab when shared")
    p.add_argument("--max-eval-prompts", type=_positive_int, default=None, help="cap on prompts per evaluation")
    p.add_argument("--max-seeds", type=_positive_int, default=d.max_seeds, help="cap on seeds per request")
    p.add_argument(
        "--temp-dir", default=None, help="where temporary files go: a fresh private folder is made inside it"
    )
    p.add_argument("--runs-dir", default=d.runs_dir, help="evaluation and training runs")
    p.add_argument("--cache-examples", default=d.cache_examples, choices=CACHE_MODES)
    p.add_argument("--cpu-offload", action="store_true", help="enable_model_cpu_offload on CUDA (less VRAM)")
    p.add_argument("--max-upload-mb", type=_positive_int, default=d.max_upload_mb)
    p.add_argument(
        "--max-loaded-models", type=_positive_int, default=d.max_loaded_models,
        help="pipelines kept in memory at once (least recently used is unloaded)",
    )
    p.add_argument(
        "--max-sessions", type=_positive_int, default=d.max_sessions,
        help="visitors' sessions kept in memory (their current pair; the least recently used go first)",
    )  # fmt: skip
    p.add_argument(
        "--allow-npnet", action="append", default=[], metavar="SPEC",
        help="an NPNet checkpoint (path or hub id) visitors of a shared app may choose (repeatable)",
    )
    p.add_argument(
        "--publish", action="append", default=[], metavar="PATH",
        help="an evaluation run folder or NPNet checkpoint every visitor sees (repeatable)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    fields = {f.name for f in dataclasses.fields(LaunchConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values.update(allow_npnet=tuple(args.allow_npnet), publish=tuple(args.publish))
    values["auth"] = accounts(args.auth or (), getattr(args, "auth_file", None))
    return LaunchConfig(**values)
