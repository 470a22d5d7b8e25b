"""Storage Commitment reports reach a TLS requester, durably and retried (PS3.4 J.3.3, PS3.15 B.9).

The requester is a pynetdicom AE whose listener accepts DICOM TLS only (DCMTK has no Storage
Commitment SCU). Its listener is down when the node answers the N-ACTION, so the first attempts
fail; the node is restarted; when the listener comes up the report arrives over TLS with the
node's implementation identification. The instances are sent by DCMTK storescu.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from scp_node.cli import main
from scp_node.egress.commitment import COMMITMENT_CLASS
from scp_node.identity import IMPLEMENTATION_CLASS_UID
from scp_node.store.outbox import Outbox
from tests.conftest import free_port, node_settings, run_node, storescu
from tests.dicom_factory import write_mr
from tests.test_egress_tls import make_certificate


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def commitment_request(files: list[Path]) -> Dataset:
    request = Dataset()
    request.TransactionUID = "1.2.826.0.1.3680043.8.498.999.14"
    request.ReferencedSOPSequence = []
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        request.ReferencedSOPSequence.append(item)
    return request


def test_report_to_a_tls_requester_survives_its_absence_and_a_restart(tmp_path, capsys):
    key, cert = make_certificate(tmp_path)
    listener_port = free_port()
    settings = node_settings(
        tmp_path,
        delivery={
            "destinations": {
                "modality": {
                    "kind": "dimse", "ae_title": "MODALITY", "host": "127.0.0.1",
                    "port": listener_port, "timeout_s": 5,
                    "tls": {"enabled": True, "ca_file": str(cert), "cert_file": str(cert),
                            "key_file": str(key)},
                }
            },
            "reply_to_sender": {"MODALITY": "modality"},
            "backoff_initial_s": 0.2, "backoff_max_s": 0.5, "poll_interval_s": 0.2,
            "max_attempts": 50,
        },
    )  # fmt: skip
    files = [write_mr(tmp_path / f"in{i}.dcm", seed=40 + i) for i in range(2)]
    request = commitment_request(files)

    with run_node(settings) as node:
        assert storescu(settings.dicom.port, files, calling="MODALITY").returncode == 0
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
        assert assoc.is_established
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
        )
        assoc.release()
        assert status.Status == 0x0000
        outbox = Outbox(node.db)

        # a requester the node has no destination for cannot get a report: refused, not lost
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(StorageCommitmentPushModel)
        assoc = stranger.associate("127.0.0.1", settings.dicom.port, ae_title="LSTV_NODE")
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
        )
        assoc.release()
        assert status.Status == 0x0110
        assert "reply_to_sender" in status.ErrorComment

        def failed_attempt():  # type: ignore[no-untyped-def]
            rows = outbox.rows()
            return rows and rows[0].attempts >= 2 and rows[0].last_error

        # nobody listens yet: the report stays queued with its reason, no plain-TCP fallback
        error = wait_until(failed_attempt, 20, "a failed report attempt")
        assert "refused or timed out" in error, error
        (row,) = outbox.rows()
        assert row.sop_class_uid == COMMITMENT_CLASS and row.state in ("pending", "sending")

    events: list[tuple[int, Dataset, str]] = []

    def on_event_report(event):  # type: ignore[no-untyped-def]
        requestor = event.assoc.requestor
        events.append(
            (event.request.EventTypeID, event.event_information,
             str(requestor.implementation_class_uid))
        )  # fmt: skip
        return 0x0000, None

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(cert), str(key))
    server_tls.verify_mode = ssl.CERT_REQUIRED  # the node must present its client certificate
    server_tls.load_verify_locations(str(cert))
    listener = AE(ae_title="MODALITY")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = listener.start_server(
        ("127.0.0.1", listener_port),
        block=False,
        ssl_context=server_tls,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event_report)],
    )
    try:
        with run_node(settings) as node:  # a restart: the queued report is still there
            wait_until(lambda: events, 20, "the N-EVENT-REPORT over TLS")
            wait_until(lambda: Outbox(node.db).rows()[0].state == "delivered", 10, "row delivered")
    finally:
        server.shutdown()
    config = tmp_path / "node.toml"
    config.write_text(f'[storage]\ndata_dir = "{settings.storage.data_dir}"\n')
    assert main(["outbox", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert f"{request.TransactionUID} (storage commitment report)" in listed, listed
    event_type, info, implementation = events[0]
    assert event_type == 1
    assert info.TransactionUID == request.TransactionUID
    assert {str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence} == {
        str(i.ReferencedSOPInstanceUID) for i in request.ReferencedSOPSequence
    }
    assert implementation == str(IMPLEMENTATION_CLASS_UID)
    assert len(events) == 1
