"""The generation engine: lazily loaded pipelines + NPNets per preset; standard / golden / inversion images.

- ``settings``: ``GenerationRequest`` / ``GenerationResult``, the preset defaults and request checks
  (``resolve_sampling``, ``resolve_settings``), the NPNet a request uses (``npnet_key``, ``npnet_spec``);
- ``models``: the model cache (``LoadedModel``, leases, least recently used eviction);
- ``generation``: ``GoldenNoiseService`` (``generate`` = ``generate_many`` of one request) and ``PeakMemory``.
"""

from npnet.engine.generation import GoldenNoiseService, PeakMemory
from npnet.engine.models import LoadedModel, ModelCache
from npnet.engine.settings import (
    METHODS,
    PER_SAMPLE_SETTINGS,
    TINY_RANDOM_NPNET,
    GenerationRequest,
    GenerationResult,
    npnet_key,
    npnet_spec,
    resolve_sampling,
    resolve_settings,
)

__all__ = [
    "METHODS",
    "PER_SAMPLE_SETTINGS",
    "TINY_RANDOM_NPNET",
    "GenerationRequest",
    "GenerationResult",
    "GoldenNoiseService",
    "LoadedModel",
    "ModelCache",
    "PeakMemory",
    "npnet_key",
    "npnet_spec",
    "resolve_sampling",
    "resolve_settings",
]
