"""End to end with real peers: a PACS (Orthanc) pushes phantom studies, the SR comes back to it."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import dcmread

from scp_node.config import Settings
from scp_node.node import Node
from scp_node.phantom_dicom import write_phantom
from tests.conftest import dcmtk, dcmtk_env, dimse_destination, free_port, node_settings, storescu
from tests.orthanc import Orthanc

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
LEGACY_CONVERTED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
DEADLINE_S = 90.0


def wait_for(
    predicate, timeout: float = DEADLINE_S, what: str = "condition", interval: float = 0.2
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pipeline_settings(tmp_path: Path, pacs: Orthanc, **extra: dict) -> Settings:
    return node_settings(
        tmp_path,
        pipeline={"enabled": True, "quiet_seconds": 1.0, "poll_interval_s": 0.2},
        delivery={
            "destinations": {
                "pacs": dimse_destination(pacs.aet, pacs.dicom_port),
            },
            "reply_to_sender": {pacs.aet: "pacs"},
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1.0,
            "poll_interval_s": 0.2,
        },
        **extra,
    )


def upload(pacs: Orthanc, files: list[Path]) -> str:
    study_id = ""
    for path in files:
        reply = httpx.post(f"{pacs.url}/instances", content=path.read_bytes(), timeout=30)
        reply.raise_for_status()
        study_id = reply.json()["ParentStudy"]
    return study_id


def sr_in_pacs(pacs: Orthanc, study_uid: str) -> list[str]:
    return [
        i
        for i in pacs.find_instances(Modality="SR")
        if pacs.instance_tags(i).get("StudyInstanceUID") == study_uid
    ]


@pytest.fixture
def pacs_and_node(tmp_path):
    settings_holder: dict[str, object] = {}
    pacs = Orthanc(tmp_path)
    node_port = free_port()
    pacs.extra_config["DicomModalities"] = {"node": ["LSTV_NODE", "127.0.0.1", node_port]}
    pacs.start()
    settings = pipeline_settings(tmp_path, pacs, dicom={"port": node_port})
    node = Node(settings)
    node.start()
    settings_holder["settings"] = settings
    try:
        yield pacs, node
    finally:
        node.stop()
        pacs.stop()


CASES = [
    ("normal", 11, J2K_LOSSLESS, False),
    ("lumbarization", 12, JPEG_LOSSLESS_SV1, True),
    ("sacralization", 13, J2K_LOSSLESS, True),
]


def test_orthanc_round_trip(pacs_and_node, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    pacs, node = pacs_and_node
    studies = []
    for variant, seed, syntax, _ in CASES:
        folder = tmp_path / variant
        files = write_phantom(
            folder, variant=variant, seed=seed, slices=12, size=256, transfer_syntax=syntax
        )
        study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        studies.append((variant, study_uid, upload(pacs, files), len(files)))
    for _variant, _study_uid, orthanc_study, count in studies:
        reply = httpx.post(f"{pacs.url}/modalities/node/store", json=orthanc_study, timeout=120)
        reply.raise_for_status()
        assert reply.json()["InstancesCount"] == count

    decisions = {}
    for (variant, study_uid, _, count), (_, _, syntax, truth) in zip(studies, CASES, strict=True):
        records = [r for r in node.index.for_study(study_uid) if r.source == "dimse"]
        assert len(records) == count
        assert {r.transfer_syntax for r in records} == {syntax}, "stored in the sender's syntax"
        found = wait_for(lambda uid=study_uid: sr_in_pacs(pacs, uid), what=f"SR for {variant}")
        assert len(found) == 1, "exactly one SR per study"
        sr = dcmread(__import__("io").BytesIO(pacs.instance_file(found[0])))
        assert sr.StudyInstanceUID == study_uid
        job = node.pipeline.jobs.get(study_uid)
        result = json.loads(job.result_json)
        decisions[variant] = (result["lstv_suspected"], truth, result["needs_review"])
        referenced = {str(r.ReferencedSOPInstanceUID) for r in sr_references(sr)}
        assert referenced <= {r.sop_instance_uid for r in records}
        assert referenced, "the SR's SCOORDs must reference the source images"
        wait_for(
            lambda uid=study_uid: node.pipeline.jobs.get(uid).state == "delivered",
            what="job delivered",
        )
    # The screen's decision matches the phantom's truth for the normal and the sacralization
    # phantom, except where the node itself flags the study for review (score within
    # review_margin of the threshold: "borderline, a radiologist decides"). Lumbarization is the
    # screen's documented weak case (docs/model.md, "Held-out evaluation": a localizer robust to
    # acquisition variation counts a lumbarized spine correctly and is not confused by it), so
    # for that phantom the round trip checks only that a complete result reached the PACS.
    # no PHI in the node's logs: the phantoms' patient names and IDs never appear
    logged = caplog.text
    assert "study" in logged and "stored sop=" in logged
    assert "PHANTOM^" not in logged and "PH-NORM" not in logged and "PH-LUMB" not in logged
    for variant in ("normal", "sacralization"):
        suspected, truth, review = decisions[variant]
        assert suspected == truth or review, (variant, decisions)


def test_orthanc_round_trip_multiframe(pacs_and_node, tmp_path):
    """A series sent as one multi-frame Legacy Converted Enhanced MR Image (J2K lossless): the SR
    in the PACS references that instance and the frame of each finding, the SC names it too."""
    pacs, node = pacs_and_node
    files = write_phantom(
        tmp_path / "mf", variant="sacralization", seed=14, slices=12, size=256,
        transfer_syntax=J2K_LOSSLESS, multiframe=True,
    )  # fmt: skip
    source = dcmread(files[0], stop_before_pixels=True)
    assert source.SOPClassUID == LEGACY_CONVERTED_MR and int(source.NumberOfFrames) == 12
    study_uid = str(source.StudyInstanceUID)
    reply = httpx.post(f"{pacs.url}/modalities/node/store", json=upload(pacs, files), timeout=120)
    reply.raise_for_status()
    assert reply.json()["InstancesCount"] == 1
    [record] = [r for r in node.index.for_study(study_uid) if r.source == "dimse"]
    assert record.sop_instance_uid == source.SOPInstanceUID
    assert record.transfer_syntax == J2K_LOSSLESS, "stored in the sender's syntax"
    found = wait_for(lambda: sr_in_pacs(pacs, study_uid), what="SR for the multi-frame study")
    assert len(found) == 1, "exactly one SR per study"
    sr = dcmread(__import__("io").BytesIO(pacs.instance_file(found[0])))
    job = node.pipeline.jobs.get(study_uid)
    result = json.loads(job.result_json)
    assert result["applicable"], result["reason"]
    frames = {level["frame_number"] for level in result["levels"]}
    assert len(frames) == 1 and None not in frames
    [frame] = frames
    refs = sr_references(sr)
    assert refs, "the SR's SCOORDs must reference the source image"
    for ref in refs:
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == LEGACY_CONVERTED_MR
        assert int(ref.ReferencedFrameNumber) == frame
    # the frame number names the slice the model worked on: every level's patient position lies on
    # that frame's plane (Plane Position of the frame, Plane Orientation shared; PS3.3 C.7.6.16)
    position = source.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0]
    orientation = source.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    cosines = [float(v) for v in orientation.ImageOrientationPatient]
    normal = np.cross(cosines[:3], cosines[3:])
    plane = float(np.dot(normal, [float(v) for v in position.ImagePositionPatient]))
    for level in result["levels"]:
        assert float(np.dot(normal, level["patient_xyz"])) == pytest.approx(plane, abs=0.01)
    # and it is the slice the phantom drew the discs on or its neighbour (the mid-sagittal search
    # may prefer the next slice, 3-4.5 mm away, when the spine lies between the two)
    truth = json.loads((tmp_path / "mf" / "truth.json").read_text())
    assert min(abs(frame - d["frame_number"]) for d in truth["discs"]) <= 1
    wait_for(lambda: node.pipeline.jobs.get(study_uid).state == "delivered", what="delivered")
    [sc_id] = [
        i
        for i in pacs.find_instances(Modality="OT")
        if pacs.instance_tags(i).get("StudyInstanceUID") == study_uid
    ]
    sc = dcmread(__import__("io").BytesIO(pacs.instance_file(sc_id)))
    [shown] = sc.SourceImageSequence
    assert shown.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert int(shown.ReferencedFrameNumber) == frame
    assert f"frame {frame} of 12" in sc.ImageComments


def sr_references(sr) -> list:
    """Every ReferencedSOPSequence item anywhere in the SR content tree."""
    found = []

    def walk(items) -> None:
        for item in items:
            found.extend(item.get("ReferencedSOPSequence", []))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def test_storescu_sender_gets_the_sr_back_via_reply_to_sender(tmp_path):
    """DCMTK storescu sends; the node routes the SR to the sender's AE (a DCMTK storescp)."""
    receiver_port, node_port = free_port(), free_port()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    storescp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "MODALITY", "-od", str(inbox), str(receiver_port)],
        env=dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = node_settings(
        tmp_path,
        dicom={"port": node_port},
        pipeline={"enabled": True, "quiet_seconds": 1.0, "poll_interval_s": 0.2},
        delivery={
            "destinations": {"modality": dimse_destination("MODALITY", receiver_port)},
            "reply_to_sender": {"MODALITY": "modality"},
            "backoff_initial_s": 0.2,
            "poll_interval_s": 0.2,
        },
    )
    node = Node(settings)
    node.start()
    try:
        files = write_phantom(tmp_path / "study", variant="normal", seed=21, slices=10, size=256)
        result = storescu(node_port, files, calling="MODALITY")
        assert result.returncode == 0, result.stderr
        study_uid = dcmread(files[0]).StudyInstanceUID
        # storescp writes the file before its C-STORE response, and the node marks the study
        # delivered only on that response: reading earlier can meet a half-written file.
        wait_for(lambda: node.outbox.study_delivered(study_uid), what="SR delivered to storescp")
        received = [p for p in inbox.iterdir() if p.name.startswith("SR")]
        assert len(received) == 1, sorted(p.name for p in inbox.iterdir())
        assert dcmread(received[0]).StudyInstanceUID == study_uid
    finally:
        node.stop()
        storescp.terminate()
        storescp.wait(10)
