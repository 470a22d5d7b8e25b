"""Audit trail units: every message builder against the schema and the PS3.15 A.5.3 rules, the
RFC 5424/5425 framing, the JSON-lines file, and the durable queue against a real rsyslogd
(messages queued while it is down reach it after it starts, across a node restart)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from types import SimpleNamespace

import pytest

from scp_node import audit
from scp_node.audit import codes as c
from scp_node.audit import events
from scp_node.audit.message import SopClassRef
from scp_node.audit.queue import AuditQueue
from scp_node.audit.results import result_messages
from scp_node.audit.syslog import octet_counted, rfc5424
from scp_node.audit.trail import AuditTrail, default_paths
from scp_node.egress.outcome import Outcome
from tests.audit_rules import parse
from tests.conftest import node_settings
from tests.syslog_receiver import receiver_for

MR = "1.2.840.10008.5.1.4.1.1.4"
LOCAL = events.Local("LSTV_NODE", "LSTV_NODE@test", "SITE-1", "scp-node", "test-host")
STUDY = events.StudyRef("1.2.826.0.1.3680043.8.498.1", "PAT-7", (SopClassRef(MR, 12),))


@pytest.fixture(autouse=True)
def _no_trail_left():
    yield
    audit.stop()


def test_every_message_follows_the_schema_and_its_table():
    pacs = events.peer("PACS", "127.0.0.1", True, c.SOURCE)
    client = events.peer("VIEWER", "127.0.0.1", True, c.SOURCE)
    messages = {
        "110100": events.application_activity(LOCAL, True),
        "110104": events.instances_transferred(
            LOCAL, pacs, LOCAL.process(False, c.DESTINATION), STUDY
        ),
        "110112": events.query(
            LOCAL,
            client,
            LOCAL.process(False, c.DESTINATION),
            b"/dicom-web/studies?PatientID=PAT-7",
            "QIDO-RS SearchForStudies",
            "PAT-7",
        ),
        "110113": events.security_alert(
            LOCAL, c.NODE_AUTHENTICATION, "calling AE title not recognized", pacs, "dicom://x"
        ),
        "110114": events.user_authentication(LOCAL, events.peer("operator", "10.0.0.9", True)),
        "110106": events.export(
            LOCAL, events.peer("PACS", "pacs.example", False, c.DESTINATION_MEDIA), STUDY
        ),
        "110102": events.begin_transferring(
            LOCAL,
            LOCAL.process(False, c.SOURCE),
            events.peer("V", "::1", True, c.DESTINATION),
            STUDY,
        ),
        "110103": events.instances_accessed(LOCAL, client, STUDY, "WADO-RS metadata"),
    }
    for event_id, message in messages.items():
        parsed = parse(message.to_xml())
        assert parsed.event_id == event_id
        assert parsed.source_id == "LSTV_NODE@test"
    transferred = parse(messages["110104"].to_xml())
    assert transferred.with_role("110153")[0].user_id == "PACS"
    assert transferred.objects_of("2")[0].object_id == "PAT-7"
    assert transferred.objects_of("110180")[0].sop_classes == {MR: 12}
    assert parse(messages["110112"].to_xml()).objects_of("110181")[0].query.endswith("PAT-7")


def test_invalid_codes_are_refused_when_built():
    with pytest.raises(ValueError):
        events.instances_transferred(
            LOCAL, LOCAL.process(True), LOCAL.process(False), STUDY, action="X"
        )
    with pytest.raises(ValueError):
        events.application_activity(LOCAL, True, outcome=3)


def test_rfc5424_header_and_octet_counting():
    xml = events.application_activity(LOCAL, True).to_xml()
    message = rfc5424(xml, "scp node", hostname="node-1", procid="42")
    header, _, body = message.partition(b"\xef\xbb\xbf")
    fields = header.decode("ascii").split(" ")
    assert fields[0] == "<85>1"  # facility 10 (authpriv), severity 5 (notice), version 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields[1])
    assert fields[2:7] == ["node-1", "scpnode", "42", "IHE+RFC-3881", "-"]
    assert body.decode("utf-8") == xml
    framed = octet_counted(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)


def test_results_sent_give_transfer_and_export_per_study(tmp_path):
    from tests.dicom_factory import write_mr

    sr = write_mr(tmp_path / "sr.dcm", seed=3)
    from pydicom import dcmread

    patient_id = dcmread(sr).PatientID
    dest = SimpleNamespace(kind="dimse", ae_title="PACS", host="127.0.0.1", port=4242, url="")
    row = SimpleNamespace(study_uid="1.2.3", sop_class_uid=MR, path=sr, attempts=1)
    dead = SimpleNamespace(study_uid="1.2.4", sop_class_uid=MR, path=sr, attempts=8)
    retry = SimpleNamespace(study_uid="1.2.5", sop_class_uid=MR, path=sr, attempts=2)
    outcomes = [Outcome(True), Outcome.failed("refused"), Outcome.failed("refused")]
    messages = list(result_messages(LOCAL, "pacs", dest, [row, dead, retry], outcomes, 8))
    assert [event for event, _ in messages] == ["transferred", "export"] * 2
    parsed = [parse(m.to_xml()) for _, m in messages]
    assert [p.outcome for p in parsed] == [0, 0, 8, 8]
    assert parsed[0].with_role("110152")[0].user_id == "PACS"
    assert parsed[0].with_role("110153")[0].user_id == "LSTV_NODE"
    assert all(p.objects_of("2")[0].object_id == patient_id for p in parsed)
    assert "dead letter" in parsed[2].description


def test_default_destination_is_the_json_lines_file(tmp_path):
    settings = node_settings(tmp_path)
    trail = audit.start(settings)
    assert trail is not None
    audit.user_authentication("operator", False, "127.0.0.1", description="wrong password")
    audit.stop()
    path, _ = default_paths(settings)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds == ["application-start", "user-authentication", "application-stop"]
    signin = parse(lines[1]["xml"])
    assert signin.outcome == 4 and signin.event_types == {"110122"}
    assert signin.with_role("110153") == [] and signin.participants[0].user_id == "operator"


def test_open_transfer_survives_a_crash(tmp_path):
    """An association that stored a study and never ended (the node died) is reported at the
    next start, as a minor failure with the patient and study."""
    settings = node_settings(tmp_path)
    crashed = AuditTrail(settings)
    for _ in range(3):
        crashed.collector.stored("dimse", "127.0.0.1:5000", "PACS", "LSTV_NODE", "1.2.3", "P-1", MR)
    crashed.queue.close()  # no end, no stop: the process is gone
    audit.start(settings)
    audit.stop()
    path, queue_path = default_paths(settings)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    transferred = [parse(x["xml"]) for x in lines if x["event"] == "transferred"]
    assert len(transferred) == 1
    assert transferred[0].outcome == 4
    assert transferred[0].objects_of("2")[0].object_id == "P-1"
    assert transferred[0].objects_of("110180")[0].object_id == "1.2.3"
    queue = AuditQueue(queue_path)
    assert queue.open_transfers() == [] and queue.pending() == 0
    queue.close()


def test_queued_while_the_receiver_is_down_reach_it_after_a_node_restart(tmp_path):
    """A node whose syslog receiver is down accepts a study (storescu); its audit messages wait
    in the queue through the node's stop and reach rsyslogd after the node's next start."""
    from tests.conftest import run_node, storescu
    from tests.dicom_factory import write_mr

    receiver = receiver_for(tmp_path / "syslog")
    settings = node_settings(
        tmp_path,
        audit={
            "destination": "syslog-tcp",
            "port": receiver.tcp_port,
            "retry_initial_s": 0.1,
            "retry_max_s": 0.3,
        },
    )
    files = [write_mr(tmp_path / f"in{k}.dcm", seed=k, study_uid="1.2.3.4") for k in (1, 2)]
    with run_node(settings):  # nobody listens on the receiver's port
        sent = storescu(settings.dicom.port, files, calling="PACS")
        assert sent.returncode == 0, sent.stderr
        audit.user_authentication("operator", True, "127.0.0.1")
        time.sleep(0.5)
    _, queue_path = default_paths(settings)
    queue = AuditQueue(queue_path)
    assert queue.pending() == 4  # start, the study, sign-in, stop: nothing lost, nothing sent
    queue.close()

    receiver.start()
    try:
        with run_node(settings):  # the restart: the four queued, then a new start
            records = receiver.wait_for(lambda r: len(r) >= 5)
        records = receiver.wait_for(lambda r: len(r) >= 6)
    finally:
        receiver.stop()
    parsed = [parse(r["xml"]) for r in records]
    assert [(p.event_id, sorted(p.event_types)) for p in parsed] == [
        ("110100", ["110120"]),
        ("110104", []),
        ("110114", ["110122"]),
        ("110100", ["110121"]),
        ("110100", ["110120"]),
        ("110100", ["110121"]),
    ]
    study = parsed[1]
    assert study.outcome == 0 and study.with_role("110153")[0].user_id == "PACS"
    assert study.objects_of("110180")[0].sop_classes == {MR: 2}
    assert study.objects_of("2")[0].object_id == "SYN0001"
    assert {r["input"] for r in records} == {"imptcp"}
    assert {(r["app"], r["msgid"], r["pri"]) for r in records} == {
        ("scp-node", "IHE+RFC-3881", "85")
    }


def _multipart(parts: list[bytes], boundary: str = "audit-boundary") -> bytes:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return body + f"--{boundary}--\r\n".encode()


def _part10(ds: object) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_stow_wado_dicom_tls_failure_and_results_sent_are_audited(tmp_path):
    """STOW-RS (one Instances Transferred per request and study), WADO-RS retrieve (Begin
    Transferring), a failed DICOM TLS handshake (Security Alert) and a result the outbox
    delivered to a real DCMTK storescp (Instances Transferred + Export), in the JSON-lines file."""
    import socket
    import subprocess

    import httpx
    from pydicom.uid import generate_uid

    from tests.conftest import dcmtk, dcmtk_env, dimse_destination, free_port, run_node
    from tests.dicom_factory import mr_dataset
    from tests.syslog_receiver import make_certificates

    certs = make_certificates(tmp_path / "certs")
    pacs_port, inbox = free_port(), tmp_path / "pacs"
    inbox.mkdir()
    settings = node_settings(
        tmp_path,
        dicom={
            "tls": {
                "enabled": True,
                "cert_file": str(certs.server_cert),
                "key_file": str(certs.server_key),
            }
        },
        delivery={
            "destinations": {"pacs": dimse_destination("PACS", pacs_port)},
            "poll_interval_s": 0.2,
        },
    )
    study_uid = generate_uid()
    instances = [mr_dataset(seed=s, study_uid=study_uid) for s in (1, 2)]
    pacs = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "-od", str(inbox), str(pacs_port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with run_node(settings) as node:
            base = f"http://127.0.0.1:{node.http.port}{settings.http.root}"
            headers = {
                "Content-Type": 'multipart/related; type="application/dicom"; '
                "boundary=audit-boundary",
                "X-Calling-AE-Title": "MODALITY",
            }
            body = _multipart([_part10(ds) for ds in instances])
            stored = httpx.post(f"{base}/studies", content=body, headers=headers, timeout=30)
            assert stored.status_code == 200, stored.text
            got = httpx.get(f"{base}/studies/{study_uid}", timeout=30)
            assert got.status_code == 200 and got.content
            with socket.create_connection(("127.0.0.1", settings.dicom.port), timeout=5) as s:
                s.sendall(b"this is not a TLS client hello" * 4)
                s.settimeout(5)
                with contextlib.suppress(OSError):
                    s.recv(100)
            result = mr_dataset(seed=9, study_uid=study_uid)
            node.outbox.enqueue_results(study_uid, [result], ["pacs"])
            deadline = time.monotonic() + 20
            while not node.outbox.study_delivered(study_uid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert node.outbox.study_delivered(study_uid)
    finally:
        pacs.terminate()
        pacs.wait(10)

    path, _ = default_paths(settings)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    parsed = {}
    for line in lines:
        parsed.setdefault(line["event"], []).append(parse(line["xml"]))

    received, sent = parsed["transferred"]  # the STOW-RS request, then the result
    assert received.with_role("110153")[0].user_id == "MODALITY"
    assert received.with_role("110152")[0].user_id == "LSTV_NODE"
    assert received.objects_of("110180")[0].sop_classes == {MR: 2}
    assert received.objects_of("2")[0].object_id == "SYN0001"
    assert sent.with_role("110153")[0].user_id == "LSTV_NODE"
    assert sent.with_role("110152")[0].user_id == "PACS" and sent.outcome == 0
    export = parsed["export"][0]
    assert export.with_role("110154")[0].user_id == "PACS"
    assert export.objects_of("2")[0].object_id == "SYN0001"

    begin = parsed["begin-transferring"][0]
    assert begin.with_role("110152")[0].access_point == "127.0.0.1"
    assert begin.objects_of("110180")[0].object_id == study_uid

    alert = parsed["security-alert"][0]
    assert alert.event_types == {"110126"} and "TLS handshake failed" in alert.description


def test_a_failing_hook_never_reaches_the_caller(tmp_path):
    settings = node_settings(tmp_path)
    audit.start(settings)
    assert audit.instance_stored(object()) is None  # no such attributes: logged, not raised
    assert audit.web_retrieve([object()]) is None
    audit.stop()
    assert audit.instance_stored(object()) is None  # no trail: a no-op
    path, queue_path = default_paths(settings)
    assert path.stat().st_mode & 0o077 == 0 and queue_path.stat().st_mode & 0o077 == 0


def test_udp_transport_reaches_rsyslog(tmp_path):
    receiver = receiver_for(tmp_path / "syslog")
    receiver.start()
    try:
        settings = node_settings(
            tmp_path, audit={"destination": "syslog-udp", "port": receiver.udp_port}
        )
        audit.start(settings)
        records = receiver.wait_for(lambda r: len(r) >= 1)
        audit.stop()
        records = receiver.wait_for(lambda r: len(r) >= 2)
    finally:
        receiver.stop()
    assert [r["input"] for r in records] == ["imudp", "imudp"]
    assert [sorted(parse(r["xml"]).event_types) for r in records] == [["110120"], ["110121"]]


def test_disabled_audit_writes_nothing(tmp_path):
    settings = node_settings(tmp_path, audit={"enabled": False})
    assert audit.start(settings) is None and audit.current() is None
    audit.user_authentication("operator", True)
    audit.stop()
    assert not (settings.storage.data_dir / "audit").exists()


def test_a_wrong_certificate_path_delays_sending_but_not_the_node(tmp_path):
    settings = node_settings(
        tmp_path,
        audit={"destination": "syslog-tls", "tls_ca_file": str(tmp_path / "missing.pem")},
    )
    assert audit.start(settings) is not None
    audit.user_authentication("operator", True)
    audit.stop()
    _, queue_path = default_paths(settings)
    queue = AuditQueue(queue_path)
    assert queue.pending() == 3  # kept for when the configuration is mended
    queue.close()
