"""The engine's model cache: lazily loaded pipelines and their NPNets, least recently used evicted first.

At most ``max_loaded`` pipelines and, per pipeline, at most ``max_npnets`` NPNets stay in memory. A
request holds its model (a lease) from load to result, so eviction never takes a pipeline from under
it: an evicted busy model is freed by its last user, and a new pipeline is built only once fewer than
``max_loaded`` are in memory. Waiting for that happens outside the cache lock, so requests for loaded
models go on meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from npnet.diffusion.loading import (
    load_npnet_for,
    load_pipeline,
    resolve_device,
    resolve_dtype,
    unavailable_reason,
)
from npnet.diffusion.presets import MODEL_PRESETS, ModelPreset, hub_offline, resolve_model
from npnet.diffusion.sampling import free_memory
from npnet.engine.settings import npnet_key, npnet_spec


@dataclass(eq=False)
class LoadedModel:
    """A loaded pipeline, its NPNets (by checkpoint spec, least recently used first) and the lock
    serialising its use; ``users`` counts the requests holding it, ``evicted`` marks one dropped from
    the cache (its memory is freed when its last user finishes)."""

    preset: ModelPreset
    pipe: Any
    device: torch.device
    dtype: torch.dtype
    npnets: OrderedDict[str, torch.nn.Module] = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    evicted: bool = False


class ModelCache:
    """Loads models lazily (cached, thread-safe): ``lease`` holds one while it is used."""

    def __init__(
        self,
        device="auto",
        dtype=None,
        offline: bool | None = None,
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        max_loaded: int = 1,
        presets: Mapping[str, ModelPreset] | None = None,
        max_npnets: int = 4,
    ):
        self.device = resolve_device(device)
        self.presets = dict(MODEL_PRESETS if presets is None else presets)
        self.dtype = dtype
        self.offline = offline
        self.cpu_offload = cpu_offload
        self.vae_tiling = vae_tiling
        self.max_loaded = max(1, int(max_loaded))
        self.max_npnets = max(1, int(max_npnets))
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._draining: list[LoadedModel] = []  # evicted while in use; freed by their last user
        self._lock = threading.Condition(threading.RLock())  # guards the two above and users/evicted
        self._held = threading.local()  # this thread's leases (a nested lease must not wait on itself)

    def preset(self, model: str) -> ModelPreset:
        """The preset ``model`` of this service's registry, checked to be loadable (offline: cached)."""
        return resolve_model(model, self.offline, self.presets)

    def available_models(self) -> list[str]:
        """Presets loadable now (offline: offline presets and fully cached hub presets)."""
        names = []
        for name in self.presets:
            try:
                preset = self.preset(name)
            except ValueError:
                continue
            if unavailable_reason(preset) is None:
                names.append(name)
        return names

    def loaded_models(self) -> list[str]:
        """The cached models, least recently used first (the next to be evicted)."""
        with self._lock:
            return list(self._loaded)

    def resident_models(self) -> list[str]:
        """Models whose pipelines are in memory now: the cached ones and evicted ones still in use."""
        with self._lock:
            models = [*self._draining, *self._loaded.values()]
            return [m.preset.name for m in models if m.pipe is not None]

    def npnet(self, model: str, override: str | None = None) -> torch.nn.Module:
        """The NPNet a request for ``model`` with NPNet ``override`` uses (loaded on first use)."""
        with self.lease(model, override) as loaded:
            return loaded.npnets[npnet_key(loaded.preset, override)]

    def load(self, model: str, npnet: str | None = None, with_npnet: bool = True) -> LoadedModel:
        """The loaded ``model`` (cached) with the NPNet ``npnet`` (or the preset's) unless ``with_npnet=False``.

        The result is not held: a later load of another model may evict it (then its ``pipe`` becomes
        None). Use ``lease`` to hold a model while using it.
        """
        with self.lease(model, npnet, with_npnet) as loaded:
            return loaded

    @contextlib.contextmanager
    def lease(self, model: str, npnet: str | None = None, with_npnet: bool = True) -> Iterator[LoadedModel]:
        """Hold ``model`` for the block: loaded (with its NPNet unless ``with_npnet=False``) and its lock held.

        An eviction meanwhile does not free it; it is freed when the block (and every other holder) ends.
        Do not lease another model inside the block (with ``max_loaded=1`` that would wait on itself).
        """
        preset = self.preset(model)
        loaded = self._acquire(preset)
        try:
            with loaded.lock:
                if loaded.pipe is None:  # first user, or an earlier load failed: load it now
                    loaded.pipe = load_pipeline(
                        preset, self.device, loaded.dtype, hub_offline(self.offline), self.cpu_offload,
                        self.vae_tiling,
                    )  # fmt: skip
                if with_npnet:
                    self._npnet_locked(loaded, npnet_key(preset, npnet))
                yield loaded
        finally:
            self._release(loaded)

    def unload(self, model: str | None = None) -> None:
        """Drop one loaded model (or all): freed now if idle, else when its in-flight requests finish."""
        with self._lock:
            idle = []
            for name in [model] if model else list(self._loaded):
                if name in self._loaded:
                    idle += self._evict_locked(self._loaded.pop(name))
        self._drop(idle)

    def _acquire(self, preset: ModelPreset) -> LoadedModel:
        """Count a user of ``preset``'s cache entry, created (after LRU eviction) when missing.

        A new entry is created only while fewer than ``max_loaded`` pipelines are in memory; evicted
        busy models count until their last user leaves, and the wait for that releases the lock.
        """
        dtype = resolve_dtype(self.dtype, preset, self.device)
        held = self._held_models()
        while True:
            with self._lock:
                loaded = self._loaded.get(preset.name)
                idle: list[LoadedModel] = []
                if loaded is None:
                    while len(self._loaded) >= self.max_loaded:
                        idle += self._evict_locked(self._loaded.popitem(last=False)[1])
                    if not idle and self._resident_locked() < self.max_loaded:
                        loaded = self._loaded[preset.name] = LoadedModel(preset, None, self.device, dtype)
                    elif not idle:
                        if any(m in held for m in self._draining):
                            raise RuntimeError(
                                f"this thread holds {[m.preset.name for m in held]} and asks for "
                                f"{preset.name!r} with max_loaded={self.max_loaded}: it would wait on "
                                "itself; end the first lease first or raise max_loaded"
                            )
                        self._lock.wait()  # every slot is a busy evicted model: wait until one is freed
                        continue
                if loaded is not None:
                    self._loaded.move_to_end(preset.name)
                    loaded.users += 1
                    held.append(loaded)
                    return loaded
            self._drop(idle)  # free the idle victims (outside the lock), then try again

    def _release(self, loaded: LoadedModel) -> None:
        with contextlib.suppress(ValueError):  # a lease ended by another thread (generator finalised)
            self._held_models().remove(loaded)
        with self._lock:
            loaded.users -= 1
            if loaded.users:
                return
            if not loaded.evicted:
                if loaded.pipe is None:  # its load failed: drop the empty entry
                    if self._loaded.get(loaded.preset.name) is loaded:
                        del self._loaded[loaded.preset.name]
                    self._lock.notify_all()
                return
        self._drop([loaded])

    def _evict_locked(self, loaded: LoadedModel) -> list[LoadedModel]:
        """Mark an entry removed from the cache as evicted; it counts as resident (``_draining``) until
        freed. Returns it if idle (the caller frees it with ``_drop``), else its last user frees it."""
        loaded.evicted = True
        self._draining.append(loaded)
        return [] if loaded.users else [loaded]

    def _drop(self, models: list[LoadedModel]) -> None:
        """Free evicted idle models (outside the service lock), then let waiting loads go on."""
        if not models:
            return
        for loaded in models:
            with loaded.lock:
                loaded.npnets.clear()
                loaded.pipe = None
        free_memory()
        with self._lock:
            for loaded in models:
                if loaded in self._draining:
                    self._draining.remove(loaded)
            self._lock.notify_all()

    def _resident_locked(self) -> int:
        return len(self._loaded) + len(self._draining)

    def _held_models(self) -> list[LoadedModel]:
        """The models this thread holds leases on."""
        if not hasattr(self._held, "models"):
            self._held.models = []
        return self._held.models

    def _npnet_locked(self, loaded: LoadedModel, key: str) -> torch.nn.Module:
        """The NPNet ``key`` of ``loaded`` (under its lock): cached, least recently used dropped first."""
        nets = loaded.npnets
        if key in nets:
            nets.move_to_end(key)
            return nets[key]
        while len(nets) >= self.max_npnets:
            nets.popitem(last=False)
        nets[key] = load_npnet_for(loaded.preset, loaded.pipe, npnet_spec(key, loaded.preset), self.device)
        return nets[key]
