"""GoldenNoiseService under concurrency: LRU eviction of pipelines and NPNets, leases, per-preset limits."""

import dataclasses
import threading
import time

import pytest
import torch

from npnet.checkpoints import save_npnet
from npnet.diffusion.presets import MODEL_PRESETS
from npnet.engine import TINY_RANDOM_NPNET, GenerationRequest, GoldenNoiseService, resolve_sampling
from npnet.errors import UserError
from npnet.worlds.tiny import TINY_SDXL_TEXT_DIM, build_tiny_npnet, build_tiny_sdxl

PROMPT = "a red cube"
SDXL, DIT = "tiny-sdxl", "tiny-hunyuan-dit"


def _recording_presets(builds: list, resident_at_build: list, holder: dict, extra=()):
    """Offline presets (tiny-sdxl, tiny-hunyuan-dit, ``extra`` copies of tiny-sdxl) whose builders record
    each build and which pipelines were in memory meanwhile."""
    presets = {name: MODEL_PRESETS[name] for name in (SDXL, DIT)}
    presets.update({name: dataclasses.replace(MODEL_PRESETS[SDXL], name=name) for name in extra})

    def recording(preset):
        def build(**kwargs):
            resident_at_build.append(holder["service"].resident_models())
            builds.append(preset.name)
            return preset.builder(**kwargs)

        return dataclasses.replace(preset, builder=build)

    return {name: recording(preset) for name, preset in presets.items()}


def test_two_threads_alternating_models_share_one_slot_without_errors():
    """max_loaded=1, two threads alternating tiny-sdxl and tiny-hunyuan-dit: every request succeeds, never
    more than one pipeline in memory (a new one is built only after the evicted one is freed), and the
    same request gives the same latents whichever thread ran it and whatever was evicted meanwhile."""
    builds, resident_at_build, holder = [], [], {}
    service = GoldenNoiseService(
        device="cpu",
        offline=True,
        progress=False,
        max_loaded=1,
        presets=_recording_presets(builds, resident_at_build, holder),
    )
    holder["service"] = service
    errors, results, peaks = [], [], []
    stop = threading.Event()

    def monitor():
        while not stop.is_set():
            peaks.append((len(service.resident_models()), len(service.loaded_models())))
            time.sleep(0.001)

    def worker(first: int):
        order = [SDXL, DIT] if first == 0 else [DIT, SDXL]
        try:
            for i in range(4):
                model = order[i % 2]
                request = GenerationRequest(model, PROMPT, seed=1, steps=2, methods=("standard", "npnet"))
                results.append(service.generate(request))
        except Exception as err:  # collected: a failure in a thread must fail the test
            errors.append(err)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    stop.set()
    watcher.join()
    assert not errors, errors
    assert len(results) == 8
    assert max(r for r, _ in peaks) <= 1 and max(n for _, n in peaks) <= 1
    assert all(resident == [] for resident in resident_at_build)  # nothing else in memory while building
    assert len(builds) >= 2 and set(builds) == {SDXL, DIT}
    for model in (SDXL, DIT):
        same = [r for r in results if r.request.model == model]
        assert len(same) == 4
        for r in same[1:]:
            assert torch.equal(r.latents["npnet"], same[0].latents["npnet"])
    assert len(service.loaded_models()) == 1 and service.resident_models() == service.loaded_models()


def test_least_recently_used_model_is_evicted_first():
    """A, B, then A again, then C: B goes (FIFO would drop A); nothing is loaded without need."""
    builds, holder = [], {}
    presets = _recording_presets(builds, [], holder, extra=["tiny-sdxl-b"])
    service = GoldenNoiseService(device="cpu", offline=True, progress=False, max_loaded=2, presets=presets)
    holder["service"] = service
    for name in (SDXL, DIT, SDXL):
        service.load(name, with_npnet=False)
    assert service.loaded_models() == [DIT, SDXL]  # least recently used first
    service.load("tiny-sdxl-b", with_npnet=False)
    assert service.loaded_models() == [SDXL, "tiny-sdxl-b"]
    assert builds == [SDXL, DIT, "tiny-sdxl-b"]  # the second use of tiny-sdxl was cached
    service.unload()
    assert service.loaded_models() == [] and service.resident_models() == []


def test_an_evicted_busy_model_finishes_its_request_and_other_models_are_not_blocked():
    """While a request holds model A, a load of B evicts A but waits (without the service lock) until A
    is freed; a request for the loaded model C meanwhile is served at once."""
    presets = {name: MODEL_PRESETS[name] for name in (SDXL, DIT)}
    presets["tiny-sdxl-c"] = dataclasses.replace(MODEL_PRESETS[SDXL], name="tiny-sdxl-c")
    service = GoldenNoiseService(device="cpu", offline=True, progress=False, max_loaded=2, presets=presets)
    service.load("tiny-sdxl-c", with_npnet=False)
    loaded_b = threading.Event()
    with service.lease(SDXL, with_npnet=False) as held:
        assert service.loaded_models() == ["tiny-sdxl-c", SDXL]

        def load_b():
            service.load(DIT, with_npnet=False)
            loaded_b.set()

        service.load("tiny-sdxl-c", with_npnet=False)  # now SDXL is the least recently used
        thread = threading.Thread(target=load_b)
        thread.start()
        deadline = time.time() + 30
        while SDXL in service.loaded_models() and time.time() < deadline:
            time.sleep(0.01)
        assert held.evicted and held.pipe is not None  # evicted, but kept for this request
        start = time.perf_counter()
        again = service.load("tiny-sdxl-c", with_npnet=False)  # not blocked by the wait for SDXL
        assert time.perf_counter() - start < 1.0 and again.pipe is not None
        assert not loaded_b.is_set()  # B waits: two pipelines (SDXL, C) are still in memory
    thread.join(timeout=120)
    assert loaded_b.is_set() and held.pipe is None
    assert sorted(service.resident_models()) == sorted([DIT, "tiny-sdxl-c"])


def test_npnet_is_loaded_only_for_npnet_requests():
    service = GoldenNoiseService(device="cpu", offline=True, progress=False, max_loaded=1)
    result = service.generate(GenerationRequest(SDXL, PROMPT, steps=2, methods=("standard",)))
    assert set(result.images) == {"standard"}
    assert len(service.load(SDXL, with_npnet=False).npnets) == 0
    service.generate(GenerationRequest(SDXL, PROMPT, steps=2, methods=("standard", "npnet")))
    assert list(service.load(SDXL, with_npnet=False).npnets) == [TINY_RANDOM_NPNET]


def test_loaded_npnets_are_a_bounded_lru_cache(tmp_path):
    paths = [
        str(save_npnet(build_tiny_npnet(TINY_SDXL_TEXT_DIM, seed=i), tmp_path / f"n{i}.safetensors"))
        for i in range(3)
    ]
    service = GoldenNoiseService(device="cpu", offline=True, progress=False, max_npnets=2)
    for path in (paths[0], paths[1], paths[0], paths[2]):
        service.load(SDXL, npnet=path)
    loaded = service.load(SDXL, with_npnet=False)
    assert list(loaded.npnets) == [paths[0], paths[2]]  # paths[1] was the least recently used
    net = service.npnet(SDXL, paths[1])  # loaded again on demand, evicting paths[0]
    assert list(loaded.npnets) == [paths[2], paths[1]] and loaded.npnets[paths[1]] is net


def test_tiny_builders_leave_the_process_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_tiny_sdxl(seed=0)
    net = build_tiny_npnet(TINY_SDXL_TEXT_DIM, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_tiny_sdxl(seed=0)
    assert torch.equal(a.unet.conv_in.weight, b.unet.conv_in.weight)  # still seeded: same weights
    assert torch.equal(
        net.embeeding.linear.weight, build_tiny_npnet(TINY_SDXL_TEXT_DIM).embeeding.linear.weight
    )


# -- limits ------------------------------------------------------------------------------------------
def _refused_fast(match: str, preset=MODEL_PRESETS[SDXL], **settings):
    start = time.perf_counter()
    with pytest.raises(UserError, match=match):
        resolve_sampling(preset, **settings)
    assert time.perf_counter() - start < 1.0


def test_preset_limits_derive_from_the_native_size_and_the_model_kind():
    assert MODEL_PRESETS[SDXL].side_limit == 256 and MODEL_PRESETS["micro"].side_limit == 256
    assert MODEL_PRESETS["sdxl"].side_limit == 4096 and MODEL_PRESETS["hunyuan-dit"].side_limit == 4096
    assert MODEL_PRESETS["sdxl"].step_limit == 150 and MODEL_PRESETS[SDXL].step_limit == 100
    custom = dataclasses.replace(MODEL_PRESETS[SDXL], max_side=128, max_steps=8)
    assert (custom.side_limit, custom.step_limit) == (128, 8)
    assert resolve_sampling(MODEL_PRESETS[SDXL], width=256, height=256, steps=100)["width"] == 256
    assert resolve_sampling(MODEL_PRESETS["sdxl"], width=4096, steps=150)["width"] == 4096


def test_oversized_and_absurd_requests_are_refused_fast_naming_the_limit():
    _refused_fast(r"width 264 px is above the limit of 256 px for tiny-sdxl", width=264)
    _refused_fast(r"height 100000 px is above the limit of 256 px", height=100000)
    _refused_fast(r"width 1e\+308 px is above the limit of 256 px", width=1e308)
    _refused_fast(r"width 4104 px is above the limit of 4096 px for sdxl", MODEL_PRESETS["sdxl"], width=4104)
    _refused_fast(r"steps 101 is above the limit of 100 steps for tiny-sdxl", steps=101)
    _refused_fast(r"steps 151 is above the limit of 150 steps for sdxl", MODEL_PRESETS["sdxl"], steps=151)
    _refused_fast(r"steps 1000000000000 is above the limit", steps=10**12)
    _refused_fast(r"redenoise_steps 500 is above the limit of 100", redenoise_steps=500)
    for bad in (float("inf"), float("nan"), 64.5, "64"):
        _refused_fast("width must be a whole number of pixels", width=bad)
    assert resolve_sampling(MODEL_PRESETS[SDXL], width=128.0)["width"] == 128  # integral floats (UI sliders)


def test_generate_refuses_an_oversized_request_before_loading_anything():
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    start = time.perf_counter()
    with pytest.raises(UserError, match="above the limit of 256 px"):
        service.generate(GenerationRequest(SDXL, PROMPT, width=100000, height=100000))
    assert time.perf_counter() - start < 1.0 and service.loaded_models() == []
