"""The shipped catalogue is consistent with the presets and the publishers' naming, and catalogue
names resolve to pulled files only (models with the catalogue's joints, detectors by preference)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tdmi.model.joints import COCO_17, POSETRACK_17
from tdmi.model.presets import get_preset
from tdmi.service.config import Settings
from tdmi.service.weights import (
    CatalogueEntry,
    NotPulledError,
    WeightsStore,
    check_pulled,
    load_catalogue,
    mirrored_url,
    resolve_detector,
    resolve_model,
)

CATALOGUE = load_catalogue()


@pytest.mark.parametrize("entry", CATALOGUE.entries.values(), ids=lambda e: e.name)
def test_each_shipped_entry_fits_its_preset_and_its_publishers_naming(entry: CatalogueEntry) -> None:
    if entry.kind == "pose":
        assert entry.preset is not None and entry.input_size == get_preset(entry.preset).input_size
    if entry.url is None:
        assert entry.manual and "no direct download" in entry.manual
        return
    name = Path(urlsplit(entry.url).path).name
    if entry.archive_member is None:
        assert entry.file == name
    if "openmmlab.com" in entry.url and entry.sha256 is not None:
        # MMPose file names carry the first 8 hex digits of the file's SHA-256
        assert f"-{entry.sha256}" in name and len(entry.sha256) == 8


# the data sets the shipped weights were trained on, and what their terms must say
DATA_TERMS = {
    "COCO": ("COCO", "annotations CC BY 4.0", "Flickr"),
    "PoseTrack": ("PoseTrack", "non-commercial"),
    "Human-Art": ("Human-Art", "non-commercial"),
}


@pytest.mark.parametrize("entry", CATALOGUE.entries.values(), ids=lambda e: e.name)
def test_each_entry_says_what_governs_its_weights_besides_the_code_licence(entry: CatalogueEntry) -> None:
    """A code licence (Apache-2.0, MIT) does not cover the weights: the training data's terms do."""
    trained_on = [name for name in DATA_TERMS if name.lower() in entry.title.lower()]
    assert trained_on, f"{entry.name}: its title names no data set it was trained on"
    for name in trained_on:
        for words in DATA_TERMS[name]:
            assert words in entry.weights_terms, f"{entry.name}: {words!r} missing"
    assert entry.licence and entry.weights_terms not in entry.licence


def test_every_published_accuracy_is_in_percent_as_the_readme_gives_it() -> None:
    numbers = [
        float(number)
        for entry in CATALOGUE.entries.values()
        for number in re.findall(r"\bm?AP ([0-9.]+)", entry.accuracy or "")
    ]
    assert len(numbers) >= 10 and all(1.0 < number < 100.0 for number in numbers)
    assert "COCO val2017 AP 74.9 " in (CATALOGUE.get("hrnet-w32-256x192-coco").accuracy or "")


def test_the_paper_start_point_is_in_the_catalogue_in_posetrack_order() -> None:
    entry = CATALOGUE.get("hrnet-w48-384x288-posetrack18")
    assert (entry.preset, entry.joints, entry.layout) == ("hrnet-w48-384x288", "posetrack-17", "mmpose-0.x")


@pytest.fixture
def store(tmp_path: Path) -> WeightsStore:
    return WeightsStore(tmp_path / "cache")


def _place(store: WeightsStore, name: str) -> Path:
    path = store.path(store.catalogue.get(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"pulled")
    return path


def test_a_catalogue_model_not_pulled_names_the_command(store: WeightsStore) -> None:
    with pytest.raises(NotPulledError, match=r"run `tdmi weights pull hrnet-w32-256x192-posetrack18`"):
        resolve_model("hrnet-w32-256x192-posetrack18", store)
    # an API node of a cluster describes it without the file
    preset, checkpoint = resolve_model("hrnet-w32-256x192-posetrack18", store, need_file=False)
    assert (preset.name, checkpoint) == ("hrnet-w32-256x192-posetrack18", None)


def test_a_start_up_names_every_entry_not_pulled_at_once(store: WeightsStore) -> None:
    _place(store, "hrnet-w32-256x192-coco")
    settings = Settings(
        weights_dir=store.directory,
        models=[
            "hrnet-w32-256x192-coco",
            "hrnet-w48-384x288-coco",
            "tdmi-tiny=hrnet-w48-384x288-posetrack18",
        ],
        detector="yolox-s",
    )
    with pytest.raises(NotPulledError) as raised:
        check_pulled(settings, loads_models=True)
    assert raised.value.names == ["hrnet-w48-384x288-coco", "hrnet-w48-384x288-posetrack18", "yolox-s"]
    assert str(raised.value).endswith(
        "run `tdmi weights pull hrnet-w48-384x288-coco hrnet-w48-384x288-posetrack18 yolox-s`"
    )
    check_pulled(settings, loads_models=False)  # an API node: no files needed, the detector not run


def test_a_pulled_catalogue_model_is_served_under_its_name_with_its_joints(store: WeightsStore) -> None:
    path = _place(store, "hrnet-w32-256x192-posetrack18")
    preset, checkpoint = resolve_model("hrnet-w32-256x192-posetrack18", store)
    assert checkpoint == path
    assert preset.name == "hrnet-w32-256x192-posetrack18"
    assert preset.layout == POSETRACK_17  # the preset hrnet-w32-256x192 alone is COCO's
    assert preset.config == get_preset("hrnet-w32-256x192").config


def test_a_preset_starts_from_a_catalogue_checkpoint_and_takes_its_joints(store: WeightsStore) -> None:
    path = _place(store, "hrnet-w48-384x288-coco")
    preset, checkpoint = resolve_model("tdmi-w48-384x288=hrnet-w48-384x288-coco", store)
    assert (preset.name, preset.layout, checkpoint) == ("tdmi-w48-384x288", COCO_17, path)


def test_bad_model_names_fail_clearly(store: WeightsStore) -> None:
    with pytest.raises(ValueError, match="catalogue: hrnet-w32-256x192-coco"):
        resolve_model("hrnet-w99", store)
    with pytest.raises(ValueError, match="its own weights"):
        resolve_model("hrnet-w32-256x192-coco=/some/file.pth", store)
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_model("hrnet-tiny=/nowhere/x.pth", store)


def test_the_first_pulled_catalogue_detector_is_the_default(store: WeightsStore) -> None:
    assert resolve_detector(None, store) == "hog"  # nothing pulled
    tiny = _place(store, "yolox-tiny")
    assert resolve_detector(None, store) == f"onnx-yolox@416x416:{tiny}"  # raw outputs: decoded with grids
    preferred = _place(store, "yolox-m-humanart")  # listed first: NMS inside, trained for persons
    assert resolve_detector(None, store) == f"onnx-mmdeploy@640x640:{preferred}"
    assert resolve_detector("hog", store) == "hog"  # a configured detector wins
    assert resolve_detector("onnx:/m/y.onnx", store) == "onnx:/m/y.onnx"
    assert resolve_detector("yolox-tiny", store) == f"onnx-yolox@416x416:{tiny}"  # its published size
    with pytest.raises(NotPulledError, match="tdmi weights pull yolox-s"):
        resolve_detector("yolox-s", store)


def test_a_site_catalogue_is_checked_and_named_in_its_errors(tmp_path: Path) -> None:
    bad = tmp_path / "site.json"
    bad.write_text('{"entries": [{"name": "x", "kind": "pose"}]}')
    with pytest.raises(ValueError, match=r"site.json: entries.0"):
        load_catalogue(bad)


def test_the_mirror_replaces_scheme_and_host_only() -> None:
    url = "https://download.openmmlab.com/mmpose/top_down/hrnet/a-1ee951c4_20201028.pth"
    assert mirrored_url(url, None) == url
    assert (
        mirrored_url(url, "http://mirror.local:8080/weights/")
        == "http://mirror.local:8080/weights/mmpose/top_down/hrnet/a-1ee951c4_20201028.pth"
    )
