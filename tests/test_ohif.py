"""The node's SR as a radiologist meets it: in OHIF 3.13 (headless chromium), fed by Orthanc.

Orthanc is the PACS; it holds a normal and a sacralisation phantom study and pushes each to the node
(``POST /modalities/node/store``); the node's pipeline C-STOREs the SR and the Secondary Capture
back. ``tests/ohif/server.py`` serves OHIF with Orthanc's DICOMweb on one origin and
``tests/ohif/view_sr.js`` opens the SR view and returns the ``svg text`` labels. Set-up:
``bash scripts/install-ohif.sh``. Set ``OHIF_SCREENSHOTS`` to a folder to keep the screenshots
(``docs/img/ohif-*.png`` come from here). Runtime: ~1 min on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from scp_node.config import ReportSettings
from scp_node.node import Node
from scp_node.phantom_dicom import write_phantom
from tests.conftest import free_port
from tests.ohif.server import OhifServer, split_includefield
from tests.orthanc import Orthanc
from tests.test_round_trip import pipeline_settings, sr_in_pacs, upload, wait_for

pytestmark = pytest.mark.ohif

HERE = Path(__file__).parent / "ohif"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
OHIF_DIST = Path(os.environ.get("OHIF_DIST", Path.home() / ".cache" / "scp-node" / "ohif" / "dist"))
REFERENCE_WEIGHTS = Path(__file__).parents[1] / "scp_node" / "data" / "reference_localizer.pt"
#: Other weights (e.g. a fresh checkpoint while the reference is being trained): OHIF_TEST_WEIGHTS.
WEIGHTS = Path(os.environ.get("OHIF_TEST_WEIGHTS", REFERENCE_WEIGHTS))
EXPLICIT_LE = "1.2.840.10008.1.2.1"
VIEW_TIMEOUT_S = 120
#: (name, phantom variant, seed, written as one multi-frame Legacy Converted Enhanced MR image)
STUDIES = [
    ("normal", "normal", 31, False),
    ("sacralization", "sacralization", 33, False),
    ("multiframe", "sacralization", 35, True),
]
VARIANTS = [(name, seed) for name, _, seed, _ in STUDIES]


def _require_tools() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not (OHIF_DIST / "index.html").exists():
        missing.append(f"OHIF dist at {OHIF_DIST}")
    if shutil.which("node") is None:
        missing.append("node")
    if not (HERE / "node_modules" / "puppeteer-core").exists():
        missing.append("tests/ohif/node_modules/puppeteer-core")
    if missing:
        hint = " (run scripts/install-ohif.sh)"
        pytest.skip("OHIF test set-up missing: " + ", ".join(missing) + hint)
    if not WEIGHTS.exists():
        pytest.skip(f"model weights not trained yet: {WEIGHTS} is absent")


@dataclass
class Level:
    """One disc-level group of the SR as the test reads it."""

    name: str
    figures: dict[str, tuple[float, str]]
    instance_number: int
    frame: int | None = None


@dataclass
class Viewed:
    """One study opened in OHIF: the SR it shows and what the browser saw."""

    variant: str
    sr: Dataset
    levels: list[Level]
    screen_texts: list[str]
    screen_figures: dict[str, tuple[float, str]]
    view: dict[str, Any]
    sc_series: list[dict[str, Any]]


def _code(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


#: (SOP Instance UID, frame number or None) of a source image → the Instance Number OHIF shows.
Sources = dict[tuple[str, int | None], int]


def _instance_numbers(header: Dataset) -> Sources:
    """What OHIF's viewport overlay shows as "I:" for each image of one source instance.

    For a multi-frame image OHIF (cornerstone's ``combineFrameInstance``) merges each frame's
    functional groups into the instance, so a Legacy Converted image shows the original slice's
    Instance Number kept in Unassigned Per-frame Converted Attributes (PS3.3 C.7.6.16.2.25).
    """
    sop, number = str(header.SOPInstanceUID), int(header.InstanceNumber)
    if "PerFrameFunctionalGroupsSequence" not in header:
        return {(sop, None): number}
    numbers: Sources = {}
    for i, item in enumerate(header.PerFrameFunctionalGroupsSequence):
        converted = item.get("UnassignedPerFrameConvertedAttributesSequence")
        frame_number = converted[0].get("InstanceNumber") if converted else None
        numbers[(sop, i + 1)] = int(frame_number if frame_number is not None else number)
    return numbers


def _read_sr(sr: Dataset, sources: Sources) -> tuple[list[Level], list[str], dict]:
    """(level groups, LSTV screen comments, LSTV screen figures) of an SR."""
    levels, texts, figures = [], [], {}
    container = next(i for i in sr.ContentSequence if i.ValueType == "CONTAINER")
    for group in container.ContentSequence:
        items = list(group.ContentSequence)
        name = next(str(i.TextValue) for i in items if _code(i) == "Tracking Identifier")
        nums = {
            _code(i): (
                float(i.MeasuredValueSequence[0].NumericValue),
                str(i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue),
            )
            for i in items
            if i.ValueType == "NUM"
        }
        if name == "LSTV screen":
            texts = [str(i.TextValue) for i in items if _code(i) == "Comment"]
            figures = nums
            continue
        # each NUM of a disc group is INFERRED FROM the disc's POINT (docs/viewer.md)
        first_num = next(i for i in items if i.ValueType == "NUM")
        scoord = next(i for i in first_num.ContentSequence if i.ValueType == "SCOORD")
        ref = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        frame = int(ref.ReferencedFrameNumber) if "ReferencedFrameNumber" in ref else None
        key = (str(ref.ReferencedSOPInstanceUID), frame)
        levels.append(Level(name, nums, sources[key], frame))
    return levels, texts, figures


def _label(name: str, value: float, unit: str) -> str:
    """A label line as OHIF 3.13 writes it (two decimals, then the UCUM code)."""
    return f"{name}: {value:.2f} {unit}"


def _view(url: str, shot: Path, *expected: str) -> dict[str, Any]:
    run = subprocess.run(
        ["node", str(HERE / "view_sr.js"), url, str(shot), *expected],
        capture_output=True,
        text=True,
        timeout=VIEW_TIMEOUT_S + 30,
        env={**os.environ, "OHIF_TIMEOUT_MS": str(VIEW_TIMEOUT_S * 1000)},
    )
    assert run.stdout.strip(), f"view_sr.js gave no result (rc {run.returncode}): {run.stderr}"
    view = json.loads(run.stdout)
    assert run.returncode == 0, f"OHIF did not show {expected}: {view['errors'][-5:]}"
    return view


@pytest.fixture(scope="module")
def viewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Viewed]]:
    """Both phantom studies pushed through the node, then each SR opened in OHIF."""
    _require_tools()
    tmp_path = tmp_path_factory.mktemp("ohif")
    pacs = Orthanc(tmp_path)
    node_port = free_port()
    pacs.extra_config["DicomModalities"] = {"node": ["LSTV_NODE", "127.0.0.1", node_port]}
    pacs.start()
    node: Node | None = None
    server: OhifServer | None = None
    try:
        model = {} if WEIGHTS == REFERENCE_WEIGHTS else {"weights": str(WEIGHTS)}
        node = Node(pipeline_settings(tmp_path, pacs, dicom={"port": node_port}, model=model))
        node.start()
        studies = []
        for variant, phantom, seed, multiframe in STUDIES:
            files = write_phantom(
                tmp_path / variant, variant=phantom, seed=seed, slices=12, size=256,
                transfer_syntax=EXPLICIT_LE, multiframe=multiframe,
            )  # fmt: skip
            headers = [dcmread(f, stop_before_pixels=True) for f in files]
            study_uid = str(headers[0].StudyInstanceUID)
            orthanc_study = upload(pacs, files)
            reply = httpx.post(f"{pacs.url}/modalities/node/store", json=orthanc_study, timeout=60)
            reply.raise_for_status()
            sources = {k: v for h in headers for k, v in _instance_numbers(h).items()}
            studies.append((variant, study_uid, sources))
        server = OhifServer(OHIF_DIST, pacs.url).start()
        out_dir = Path(os.environ.get("OHIF_SCREENSHOTS", tmp_path))
        out_dir.mkdir(parents=True, exist_ok=True)
        result: dict[str, Viewed] = {}
        for variant, study_uid, sources in studies:
            found = wait_for(lambda uid=study_uid: sr_in_pacs(pacs, uid), what=f"SR of {variant}")
            wait_for(
                lambda uid=study_uid: node.pipeline.jobs.get(uid).state == "delivered",
                what=f"{variant} delivered (SR and SC)",
            )
            sr = dcmread(io.BytesIO(pacs.instance_file(found[0])))
            levels, texts, figures = _read_sr(sr, sources)
            url = (
                f"{server.url}/basic?StudyInstanceUIDs={study_uid}"
                f"&initialSeriesInstanceUID={sr.SeriesInstanceUID}"
            )
            view = _view(url, out_dir / f"ohif-{variant}.png", "Peak confidence", texts[0])
            qido = httpx.get(  # the query OHIF's study browser makes, through the same proxy
                f"{server.url}/dicom-web/studies/{study_uid}/series",
                params={"includefield": "SeriesDescription,SeriesNumber"},
                timeout=10,
            )
            qido.raise_for_status()
            result[variant] = Viewed(variant, sr, levels, texts, figures, view, qido.json())
        yield result
    finally:
        if server is not None:
            server.stop()
        if node is not None:
            node.stop()
        pacs.stop()


def _boxes(view: dict[str, Any], first: str) -> list[list[str]]:
    return [box for box in view["labels"] if box and box[0].startswith(first)]


def _disc_boxes(view: dict[str, Any]) -> list[list[str]]:
    """Text boxes whose first line is a disc level's name ("L5-S1:")."""
    return [box for box in view["labels"] if box and re.match(r"^L\d-[LS]\d:", box[0])]


def _on_slice(seen: Viewed) -> list[Level]:
    """The disc levels the SR places on the slice OHIF shows."""
    shown = re.search(r"\bI:\s*(\d+)", seen.view["bodyText"])
    assert shown, "OHIF's viewport overlay names the instance it shows"
    on_slice = [lvl for lvl in seen.levels if lvl.instance_number == int(shown.group(1))]
    assert on_slice, "OHIF opens the SR on a slice that the SR references"
    return on_slice


@pytest.mark.parametrize("variant", [v for v, _ in VARIANTS])
def test_one_marker_per_level_with_its_figures_on_the_referenced_slice(
    viewed: dict[str, Viewed], variant: str
) -> None:
    seen = viewed[variant]
    on_slice = _on_slice(seen)
    boxes = _disc_boxes(seen.view)
    assert len(boxes) == len(on_slice), (boxes, [lvl.name for lvl in seen.levels])
    expected = sorted(
        [
            f"{lvl.name}:",
            _label("Peak confidence", *lvl.figures["Peak confidence"]),
            _label("Entropy", *lvl.figures["Entropy"]),
        ]
        for lvl in on_slice
    )
    assert sorted([box[0].strip(), *box[1:3]] for box in boxes) == expected


@pytest.mark.parametrize("variant", [v for v, _ in VARIANTS])
def test_study_level_verdict_is_shown(viewed: dict[str, Viewed], variant: str) -> None:
    seen = viewed[variant]
    verdict = seen.screen_texts[0]
    # the node's first Comment: a verdict, or "Not assessable: <reason>" (also a study-level answer)
    assert re.fullmatch(r"(No )?LSTV suspected(, needs review)?|Not assessable: .+", verdict)
    boxes = _boxes(seen.view, verdict)
    assert len(boxes) == 1, seen.view["labels"]
    if verdict.startswith("Not assessable"):
        # a not-assessable screen reports no score (docs/report.md), so its box shows none
        assert "LSTV score" not in seen.screen_figures
        assert not any("LSTV score" in line for line in boxes[0])
        return
    assert _label("LSTV score", *seen.screen_figures["LSTV score"]) in boxes[0]
    assert _label("LSTV threshold", *seen.screen_figures["LSTV threshold"]) in boxes[0]


@pytest.mark.parametrize("variant", [v for v, _ in VARIANTS])
def test_secondary_capture_is_an_image_series_in_the_study_browser(
    viewed: dict[str, Viewed], variant: str
) -> None:
    seen = viewed[variant]
    settings = ReportSettings()
    series = {
        s["0020000E"]["Value"][0]: (s["00080060"]["Value"][0], s["00200011"]["Value"][0])
        for s in seen.sc_series
    }
    assert (settings.sc_series_number) in {number for _, number in series.values()}
    assert ("OT", settings.sc_series_number) in series.values()
    assert settings.sc_series_description in seen.view["bodyText"], "SC thumbnail label"
    assert settings.series_description in seen.view["bodyText"], "SR in the study browser"


@pytest.mark.parametrize("variant", [v for v, _ in VARIANTS])
def test_each_marker_names_its_disc_level(viewed: dict[str, Viewed], variant: str) -> None:
    seen = viewed[variant]
    named = {box[0].strip().rstrip(":") for box in _disc_boxes(seen.view)}
    assert named == {lvl.name for lvl in _on_slice(seen)}
    for box in _disc_boxes(seen.view):
        assert any(line.startswith("Mutual information: ") for line in box), box


def test_multiframe_sr_is_shown_on_the_referenced_frame(viewed: dict[str, Viewed]) -> None:
    """The SR of a multi-frame study references frames; OHIF opens it on that frame."""
    seen = viewed["multiframe"]
    frames = {lvl.frame for lvl in seen.levels}
    assert len(frames) == 1 and None not in frames, frames
    [frame] = frames
    # OHIF's overlay: "I: <Instance Number of the frame> (<frame index + 1>/<frames>)"; the stack
    # of a multi-frame instance is in frame order, so the index names the frame
    shown = re.search(r"\bI:\s*(\d+)\s*\((\d+)/(\d+)\)", seen.view["bodyText"])
    assert shown, seen.view["bodyText"][-500:]
    assert (int(shown.group(2)), int(shown.group(3))) == (frame, 12)
    assert _disc_boxes(seen.view), "the disc labels are drawn on the multi-frame image"


def test_proxy_splits_comma_separated_includefield() -> None:
    """DICOMweb 1.7 ignores ``includefield=a,b``; the proxy sends repeated parameters instead."""
    query = "limit=5&includefield=00081030,00080060&StudyInstanceUID=1.2.3"
    assert split_includefield(query) == (
        "limit=5&includefield=00081030&includefield=00080060&StudyInstanceUID=1.2.3"
    )
