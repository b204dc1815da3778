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

import pytest  # noqa: E402
from devserver import running_app  # noqa: E402

# Modules that share a session fixture run on one xdist worker (so it starts once): module path -> group.
SHARED_WORKER = {"tests/test_app_api.py": "offline-app", "tests/test_app_browser.py": "offline-app"}


def pytest_xdist_make_scheduler(config, log):
    """Under ``-n`` each test module runs on one worker (``--dist loadfile``), so its module-scoped fixtures
    (a server, a tiny pipeline) start once; the modules in ``SHARED_WORKER`` share a worker and its server."""
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return SHARED_WORKER.get(module, module)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def offline_app(tmp_path_factory):
    """One ``python app.py --offline --device cpu`` for the API and browser modules (same flags); yields
    (url, workdir). After shutdown the app's temporary folder must be empty."""
    workdir = tmp_path_factory.mktemp("app")
    with running_app(workdir, "--offline", "--device", "cpu") as (url, proc):
        yield url, workdir
        assert proc.poll() is None, "the server died during the tests"
    leftovers = [p.name for p in (workdir / "tmp").iterdir()]
    assert leftovers == [], f"temporary files left after shutdown: {leftovers}"

