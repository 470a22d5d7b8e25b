"""Result delivery over DICOM TLS to a real DCMTK storescp with a certificate made here."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydicom import dcmread

from scp_node.config import Destination
from scp_node.egress.dimse import send_files
from tests.conftest import dcmtk, dcmtk_env, free_port
from tests.dicom_factory import write_mr
from tests.ports import wait_listening


def make_certificate(folder: Path, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate naming ``san`` (the recipe docs/deployment.md gives)."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=scp-node test", "-addext", f"subjectAltName={san}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def test_c_store_over_tls_and_refused_without_trust(tmp_path):
    key, cert = make_certificate(tmp_path)
    inbox, port = tmp_path / "inbox", free_port()
    inbox.mkdir()
    receiver = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "+tls", str(key), str(cert), "+cf", str(cert),
         "-od", str(inbox), str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port)
        sent = write_mr(tmp_path / "result.dcm", seed=8)
        sop_class = str(dcmread(sent).SOPClassUID)
        trusted = Destination(
            ae_title="PACS", host="127.0.0.1", port=port,
            tls={"enabled": True, "ca_file": cert, "cert_file": cert, "key_file": key},
        )  # fmt: skip
        outcomes = send_files(trusted, "LSTV_NODE", [(sent, sop_class)])
        assert [o.ok for o in outcomes] == [True], outcomes
        assert len(list(inbox.iterdir())) == 1

        # a destination whose CA does not vouch for the server's certificate is not trusted
        other = tmp_path / "other"
        other.mkdir()
        _, other_cert = make_certificate(other)
        untrusted = Destination(
            ae_title="PACS", host="127.0.0.1", port=port,
            tls={"enabled": True, "ca_file": other_cert},
        )  # fmt: skip
        refused = send_files(untrusted, "LSTV_NODE", [(sent, sop_class)])
        assert [o.ok for o in refused] == [False]
        assert "TLS certificate verification failed" in refused[0].error, refused[0].error

        # trusted, but the certificate does not name the host delivery connects to
        wrong_name = Destination(
            ae_title="PACS", host="localhost", port=port,
            tls={"enabled": True, "ca_file": cert, "cert_file": cert, "key_file": key},
        )  # fmt: skip
        mismatch = send_files(wrong_name, "LSTV_NODE", [(sent, sop_class)])
        assert [o.ok for o in mismatch] == [False]
        assert "TLS certificate verification failed" in mismatch[0].error
        assert "'localhost'" in mismatch[0].error and "subjectAltName" in mismatch[0].error
    finally:
        receiver.terminate()
        receiver.wait(10)
