"""Diffusers glue: model presets, loading, schedulers, sampling, and re-denoise sampling (Alg. 1 lines 5-6)."""
