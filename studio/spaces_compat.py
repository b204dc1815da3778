"""ZeroGPU on Hugging Face Spaces: ``spaces.GPU`` when the ``spaces`` package is importable, else a no-op."""

from __future__ import annotations


def gpu(duration: int = 60):
    """Decorator requesting a GPU for ``duration`` seconds per call on ZeroGPU Spaces."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)
