"""Released checkpoint names resolve on the first try: exact file, else the repo's one file of that family."""

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

from npnet import hub as hub_module
from npnet.checkpoints import OFFICIAL_REPO, resolve_checkpoint
from npnet.errors import UserError


def _missing(message: str) -> RemoteEntryNotFoundError:
    """The hub's "no such file in the repo" error (built without an HTTP response)."""
    err = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)
    Exception.__init__(err, message)
    return err


class Hub:
    """A stubbed hub holding ``files`` in the official repo; records downloads and listings."""

    def __init__(self, files, offline=False):
        self.files, self.offline = list(files), offline
        self.downloads, self.listings = [], 0

    def download(self, repo_id, filename, **kwargs):
        if self.offline:
            raise LocalEntryNotFoundError("offline")
        if filename not in self.files:
            raise _missing(f"{filename} not found")
        self.downloads.append((repo_id, filename))
        return f"/cache/{repo_id}/{filename}"

    def list(self, repo_id, **kwargs):
        self.listings += 1
        return ["README.md", ".gitattributes", *self.files]


def _install(monkeypatch, hub: Hub) -> Hub:
    monkeypatch.setattr(hub_module, "hf_hub_download", hub.download)
    monkeypatch.setattr(hub_module, "list_repo_files", hub.list)
    return hub


def test_an_exact_hit_downloads_the_named_file_without_listing(monkeypatch):
    hub = _install(monkeypatch, Hub(["sdxl.pth", "dit.pth", "dreamshaper.pth"]))
    assert str(resolve_checkpoint("sdxl")).endswith("sdxl.pth")
    assert hub.downloads == [(OFFICIAL_REPO, "sdxl.pth")] and hub.listings == 0


@pytest.mark.parametrize(
    ("name", "files", "expected"),
    [
        ("sdxl", ["NPNet_SDXL.pth", "dreamshaper_xl.pth", "hunyuan_dit.pth"], "NPNet_SDXL.pth"),
        (
            "dreamshaper",
            ["NPNet_SDXL.pth", "weights/dreamshaper_xl.pth", "hunyuan_dit.pth"],
            "weights/dreamshaper_xl.pth",
        ),
        (
            "dit",
            ["NPNet_SDXL.pth", "dreamshaper_xl.pth", "hunyuan_dit.safetensors"],
            "hunyuan_dit.safetensors",
        ),
    ],
)
def test_a_missing_name_resolves_to_the_one_file_of_its_family(monkeypatch, name, files, expected):
    hub = _install(monkeypatch, Hub(files))
    assert str(resolve_checkpoint(name)).endswith(expected)
    assert hub.downloads == [(OFFICIAL_REPO, expected)] and hub.listings == 1


def test_several_matches_are_listed_and_nothing_is_downloaded(monkeypatch):
    hub = _install(monkeypatch, Hub(["sdxl_v1.pth", "sdxl_v2.pth", "dit.pth"]))
    with pytest.raises(
        UserError, match=r"'sdxl.pth' is not in .*several files match.*sdxl_v1.pth.*sdxl_v2.pth"
    ):
        resolve_checkpoint("sdxl")
    assert hub.downloads == []


def test_no_match_lists_the_repos_checkpoints(monkeypatch):
    hub = _install(monkeypatch, Hub(["model_a.pth", "model_b.safetensors"]))
    with pytest.raises(
        UserError, match=r"no file matches .*DreamShaper.*model_a.pth.*model_b.safetensors"
    ) as err:
        resolve_checkpoint("dreamshaper")
    assert hub.downloads == [] and "README.md" not in str(err.value)


def test_offline_keeps_the_download_instruction_and_never_lists(monkeypatch):
    hub = _install(monkeypatch, Hub(["NPNet_SDXL.pth"], offline=True))
    with pytest.raises(UserError, match=f"huggingface-cli download {OFFICIAL_REPO} sdxl.pth"):
        resolve_checkpoint("sdxl")
    assert hub.listings == 0
