"""Orthanc (DICOMweb plugin) as a real STOW-RS / QIDO-RS / WADO-RS client of the node.

Orthanc fails a STOW-RS push unless the reply's ReferencedSOPSequence lists every instance it sent
(docs PEERS.md), so a passing push proves the response is complete.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from dicom_factory import mr_dataset
from orthanc import Orthanc
from pydicom.uid import JPEG2000Lossless, generate_uid

from scp_node.node import Node
from tests.conftest import node_settings, run_node

TOKEN = "orthanc-test-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    settings = node_settings(
        tmp_path_factory.mktemp("node"), http={"port": 0, "auth": "token", "token": TOKEN}
    )
    with run_node(settings) as running:
        yield running


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, node: Node) -> Iterator[Orthanc]:
    servers = {
        "node": {
            "Url": f"http://127.0.0.1:{node.http.port}/dicom-web/",
            "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"},
        }
    }
    root = tmp_path_factory.mktemp("pacs")
    with Orthanc(root, DicomWeb={"Enable": True, "Root": "/dicom-web/", "Servers": servers}) as o:
        yield o


def upload_study(pacs: Orthanc) -> tuple[str, str, list[str]]:
    """Three MR instances (two Explicit VR LE, one J2K lossless) into Orthanc; returns the
    Orthanc study id, the Study Instance UID and the SOP Instance UIDs."""
    study_uid = generate_uid()
    sops = []
    orthanc_study = ""
    for seed in range(3):
        ds = mr_dataset(seed=seed, study_uid=study_uid)
        ds.InstanceNumber = seed + 1
        if seed == 2:
            ds.compress(JPEG2000Lossless)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        reply = httpx.post(f"{pacs.url}/instances", content=buffer.getvalue(), timeout=10)
        reply.raise_for_status()
        orthanc_study = reply.json()["ParentStudy"]
        sops.append(str(ds.SOPInstanceUID))
    return orthanc_study, study_uid, sops


def test_orthanc_stow_push_qido_and_wado_pull(node: Node, pacs: Orthanc) -> None:
    orthanc_study, study_uid, sops = upload_study(pacs)
    push = httpx.post(
        f"{pacs.url}/dicom-web/servers/node/stow",
        json={"Resources": [orthanc_study], "Synchronous": True},
        timeout=30,
    )
    assert push.status_code == 200, push.text
    records = node.index.for_study(study_uid)
    assert sorted(r.sop_instance_uid for r in records) == sorted(sops)
    assert all(r.source == "stow" and r.path.is_file() for r in records)
    assert {r.transfer_syntax for r in records} >= {JPEG2000Lossless}

    # QIDO-RS through Orthanc's DICOMweb client, with the same bearer token.
    found = httpx.post(
        f"{pacs.url}/dicom-web/servers/node/get",
        json={"Uri": "/studies", "Arguments": {"StudyInstanceUID": study_uid}},
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [study_uid]

    # WADO-RS: Orthanc forgets the study, then pulls it back from the node.
    assert httpx.delete(f"{pacs.url}/studies/{orthanc_study}", timeout=10).status_code == 200
    assert pacs.count_instances() == 0
    pull = httpx.post(
        f"{pacs.url}/dicom-web/servers/node/retrieve",
        json={"Resources": [{"Study": study_uid}]},
        timeout=30,
    )
    assert pull.status_code == 200, pull.text
    assert sorted(pacs.instance_tags(i)["SOPInstanceUID"] for i in pacs.find_instances()) == sorted(
        sops
    )


def test_orthanc_push_with_wrong_token_is_refused(node: Node, pacs: Orthanc) -> None:
    wrong = {
        "Url": f"http://127.0.0.1:{node.http.port}/dicom-web/",
        "HttpHeaders": {"Authorization": "Bearer not-the-token"},
    }
    assert httpx.put(f"{pacs.url}/dicom-web/servers/wrong", json=wrong, timeout=10).is_success
    orthanc_study, study_uid, _ = upload_study(pacs)
    push = httpx.post(
        f"{pacs.url}/dicom-web/servers/wrong/stow",
        json={"Resources": [orthanc_study], "Synchronous": True},
        timeout=30,
    )
    assert push.status_code != 200
    assert node.index.for_study(study_uid) == []
