"""Test setup: never touch the network, keep CPU threads bounded."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# One thread per process: tests start subprocesses (sharded runs, the app server), and tiny models gain
# nothing from intra-op threads; subprocesses inherit this so their floats match the parent's exactly.
os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
