"""The analysis decodes only the slices the model uses, and its results are those of decoding all.

No mocks: the slices the model does not look at get undecodable garbage as their JPEG 2000 pixel
data (the eager loader shows that it is undecodable), and the analysis gives the same result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from scp_node.analysis import analyze_study, prepare_study
from scp_node.config import ModelSettings, Settings
from scp_node.model.engine import LocalizerEngine
from scp_node.phantom_dicom import write_phantom
from scp_node.result import StudyResult
from scp_node.series import select_and_load, select_series
from scp_node.slices import SliceStack
from tests.conftest import SHIPPED_THRESHOLD

SLICES = 40


@pytest.fixture(scope="module")
def settings() -> Settings:
    settings = Settings()
    # fewer passes for speed; the shipped threshold given, since 4 passes make other scores
    settings.model = ModelSettings(device="cpu", mc_samples=4, lstv_threshold=SHIPPED_THRESHOLD)
    return settings


@pytest.fixture(scope="module")
def engine(settings: Settings) -> LocalizerEngine:
    return LocalizerEngine.from_settings(settings.model)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("wide") / "study"
    return write_phantom(
        folder, "normal", seed=900_101, slices=SLICES, size=192, transfer_syntax=JPEG2000Lossless
    )


def _comparable(result: StudyResult) -> dict[str, Any]:
    """The result without what depends on the run (time) or the machine."""
    out = result.to_json()
    out.pop("inference_ms", None)
    out.pop("device", None)
    return out


def _garble(path: Path) -> None:
    """Replace the pixel data of one J2K instance with bytes no decoder accepts."""
    ds = dcmread(path)
    ds.PixelData = encapsulate([b"\x00garbage, not a JPEG 2000 codestream\x00" * 8])
    ds.save_as(path, enforce_file_format=True)


def _axial_decoys(paths: list[Path], folder: Path) -> list[Path]:
    """An axial T2 series of the same study whose pixel data no decoder accepts."""
    folder.mkdir(parents=True)
    series = generate_uid()
    out = []
    for n, path in enumerate(paths):
        ds = dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series, 50, "ax T2"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelData = encapsulate([b"not pixels" * 16])
        ds.save_as(folder / f"AX{n:04d}.dcm", enforce_file_format=True)
        out.append(folder / f"AX{n:04d}.dcm")
    return out


def _copy(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for path in paths:
        target = folder / path.name
        target.write_bytes(path.read_bytes())
        out.append(target)
    return out


def test_lazy_slices_equal_the_eager_volume(study: list[Path], settings: Settings) -> None:
    eager = select_and_load(study, settings.series).volume
    lazy = select_series(study, settings.series).volume
    assert eager is not None and lazy is not None
    assert isinstance(lazy.volume, SliceStack) and not lazy.volume.decoded
    assert lazy.sop_instance_uids == eager.sop_instance_uids
    assert lazy.positions == eager.positions and lazy.slice_spacing == eager.slice_spacing
    assert lazy.volume.shape == eager.volume.shape
    assert np.array_equal(lazy.volume[3], eager.volume[3])
    assert np.array_equal(np.asarray(lazy.volume), eager.volume)


def test_analysis_decodes_only_the_slices_it_uses(
    study: list[Path], settings: Settings, engine: LocalizerEngine, tmp_path: Path
) -> None:
    reference = analyze_study(study, settings, engine)
    assert reference.applicable and reference.levels
    selection = select_series(study, settings.series)
    assert selection.volume is not None
    stack = selection.volume.volume
    assert isinstance(stack, SliceStack)
    assert _comparable(engine.analyze(selection.volume)) == _comparable(reference)
    used = set(stack.decoded)
    assert len(used) == len(stack.decoded), "a slice was decoded twice"
    assert 0 < len(used) <= SLICES // 4, f"{len(used)} of {SLICES} slices decoded"
    used_sops = {selection.volume.sop_instance_uids[k] for k in used}

    garbled = _copy(study, tmp_path / "garbled")
    unused = [p for p in garbled if str(dcmread(p).SOPInstanceUID) not in used_sops]
    assert len(unused) == SLICES - len(used)
    for path in unused:
        _garble(path)
    # loading every slice shows the garbage really is undecodable ...
    eager = select_and_load(garbled, settings.series).volume
    assert eager is not None
    assert sum("dropped" in w for w in eager.warnings) == len(unused)
    # ... and the analysis, which never decodes those slices (nor a decoy series' pixels: the
    # series is chosen from headers), gives the very same result
    decoys = _axial_decoys(garbled[:6], tmp_path / "decoys")
    again = analyze_study(garbled + decoys, settings, engine)
    assert _comparable(again) == _comparable(reference)
    assert not any("dropped" in w for w in again.warnings)


def test_an_undecodable_slice_the_model_needs_is_dropped(
    study: list[Path], settings: Settings, engine: LocalizerEngine, tmp_path: Path
) -> None:
    reference = analyze_study(study, settings, engine)
    centre = reference.levels[0].sop_instance_uid
    garbled = _copy(study, tmp_path / "garbled")
    [bad] = [p for p in garbled if str(dcmread(p).SOPInstanceUID) == centre]
    _garble(bad)
    result = analyze_study(garbled, settings, engine)
    without = analyze_study([p for p in garbled if p != bad], settings, engine)
    assert result.applicable and result.levels
    assert any(w.startswith(f"slice {bad.name} dropped") for w in result.warnings)
    assert all(f.sop_instance_uid != centre for f in result.levels)
    expected = _comparable(without)
    got = _comparable(result)
    assert [w for w in got.pop("warnings") if bad.name not in w] == list(expected.pop("warnings"))
    assert got == expected


def test_multiframe_lazy_analysis_equals_the_eager_volume(
    settings: Settings, engine: LocalizerEngine, tmp_path: Path
) -> None:
    [path] = write_phantom(tmp_path / "mf", "normal", seed=900_102, slices=7, multiframe=True)
    eager = select_and_load([path], settings.series).volume
    assert eager is not None
    lazy = analyze_study([path], settings, engine)
    assert lazy.applicable and all(f.frame_number is not None for f in lazy.levels)
    assert _comparable(lazy) == _comparable(engine.analyze(eager))


def test_a_study_prepared_ahead_gives_the_same_result(
    study: list[Path], settings: Settings, engine: LocalizerEngine
) -> None:
    """The head start taken while a study is quiet (selection, decoding, canonical inputs)
    changes nothing, and is ignored when the files differ from those it was made from."""
    reference = analyze_study(study, settings, engine)
    prepared = prepare_study(study, settings, engine)
    assert prepared is not None
    stack = prepared.selection.volume.volume if prepared.selection.volume else None
    assert isinstance(stack, SliceStack) and len(stack.decoded) <= SLICES // 4
    assert _comparable(analyze_study(study, settings, engine, prepared)) == _comparable(reference)
    decoded = len(stack.decoded)
    assert decoded == len(set(stack.decoded)), "a prepared slice was decoded again"
    fewer = study[:-1]
    other = analyze_study(fewer, settings, engine, prepare_study(study, settings, engine))
    assert _comparable(other) == _comparable(analyze_study(fewer, settings, engine))
