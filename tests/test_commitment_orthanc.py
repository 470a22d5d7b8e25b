"""Storage Commitment with a real Orthanc as the requester, over DICOM TLS both ways.

Orthanc (DICOM TLS on, certificates from docs/deployment.md's recipe) pushes an instance to the
node and asks for Storage Commitment; the node's N-EVENT-REPORT must reach Orthanc's TLS-only DICOM
port with the requester's destination settings, so Orthanc reports the commitment as Success.
"""

from __future__ import annotations

import time

import httpx

from tests.conftest import node_settings, run_node
from tests.dicom_factory import write_mr
from tests.orthanc import Orthanc
from tests.test_tls_recipe import make_certificates


def test_orthanc_commitment_request_over_tls_is_reported(tmp_path):
    make_certificates(tmp_path, {"node": "IP:127.0.0.1", "pacs": "IP:127.0.0.1"})
    ca, node_cert, node_key = (str(tmp_path / f) for f in ("ca.crt", "node.crt", "node.key"))
    settings = node_settings(tmp_path, dicom={"tls": {"enabled": True, "cert_file": node_cert,
                             "key_file": node_key, "ca_file": ca}})  # fmt: skip
    pacs = Orthanc(
        tmp_path,
        DicomTlsEnabled=True,
        DicomTlsCertificate=str(tmp_path / "pacs.crt"),
        DicomTlsPrivateKey=str(tmp_path / "pacs.key"),
        DicomTlsTrustedCertificates=ca,
        DicomModalities={"node": {"AET": "LSTV_NODE", "Host": "127.0.0.1",
                                  "Port": settings.dicom.port, "UseDicomTls": True}},
    )  # fmt: skip
    settings = node_settings(
        tmp_path,
        dicom={"port": settings.dicom.port, "tls": settings.dicom.tls.model_dump()},
        delivery={
            "destinations": {"orthanc": {
                "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1",
                "port": pacs.dicom_port, "timeout_s": 10,
                "tls": {"enabled": True, "ca_file": ca, "cert_file": node_cert,
                        "key_file": node_key}}},
            "reply_to_sender": {"ORTHANC": "orthanc"},
            "poll_interval_s": 0.2,
        },
    )  # fmt: skip
    with pacs, run_node(settings) as node:
        uploaded = httpx.post(
            f"{pacs.url}/instances", content=write_mr(tmp_path / "a.dcm", seed=70).read_bytes()
        )
        uploaded.raise_for_status()
        reply = httpx.post(
            f"{pacs.url}/modalities/node/store",
            json={"Resources": [uploaded.json()["ID"]], "StorageCommitment": True,
                  "Synchronous": True},
            timeout=60,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        transaction = reply.json()["StorageCommitmentTransactionUID"]
        deadline, status = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            status = httpx.get(f"{pacs.url}/storage-commitment/{transaction}").json()["Status"]
            if status != "Pending":
                break
            time.sleep(0.2)
        assert status == "Success", (status, pacs.log_path.read_text()[-2000:])
        assert node.index.count() == 1
