"""NPNet Studio: golden noise for diffusion models (Zhou et al., arXiv 2411.09502)."""

__version__ = "0.1.0"
