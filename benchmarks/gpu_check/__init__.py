"""One-command GPU check of SDXL + the official NPNet: ``python -m benchmarks.gpu_check --help``.

``checks`` holds the configuration, fixed inputs and measuring stages 1-3 (pairs, golden vs fp32, timing
and memory); ``scoring`` stages 4-5 (the six metrics, the eval preset run); ``report`` the paper's figures
and report.json / report.md; ``__main__`` runs the stages in order and is the command line.
"""

from benchmarks.gpu_check.checks import (
    GOLDEN_ATOL,
    GOLDEN_RTOL,
    PAIRS,
    CheckConfig,
    choose_device,
    choose_dtype,
    compare_golden,
)

__all__ = [
    "GOLDEN_ATOL",
    "GOLDEN_RTOL",
    "PAIRS",
    "CheckConfig",
    "choose_device",
    "choose_dtype",
    "compare_golden",
]
