"""The audit trail end to end: a node sends its PS3.15 A.5 audit messages over RFC 5425 (TLS,
mutual certificates) to a real rsyslogd while DCMTK storescu sends it a phantom study, a
DICOMweb client queries and reads it, an unknown AE and a wrong token are refused. Every message
the receiver got is checked against the schema and its PS3.15 A.5.3 table."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydicom import dcmread

from scp_node.phantom_dicom import write_phantom
from tests.audit_rules import Parsed, parse
from tests.conftest import node_settings, run_node, storescu
from tests.syslog_receiver import running_receiver

TOKEN = "audit-test-token"


def _by_event(parsed: list[Parsed], event_id: str) -> list[Parsed]:
    return [p for p in parsed if p.event_id == event_id]


def test_store_query_and_refusals_reach_the_syslog_receiver_over_tls(tmp_path: Path) -> None:
    study = write_phantom(tmp_path / "study", seed=5, slices=4, size=64)
    header = dcmread(study[0], stop_before_pixels=True)
    patient_id, study_uid = str(header.PatientID), str(header.StudyInstanceUID)
    with running_receiver(tmp_path / "syslog") as receiver:
        certs = receiver.certs
        settings = node_settings(
            tmp_path,
            dicom={"allowed_calling_aes": ["PACS"]},
            http={"auth": "token", "token": TOKEN},
            audit={
                "destination": "syslog-tls",
                "host": "127.0.0.1",
                "port": receiver.tls_port,
                "tls_ca_file": str(certs.ca),
                "tls_cert_file": str(certs.client_cert),
                "tls_key_file": str(certs.client_key),
                "enterprise_site_id": "TEST-SITE",
            },
        )
        with run_node(settings) as node:
            sent = storescu(settings.dicom.port, study, calling="PACS")
            assert sent.returncode == 0, sent.stderr
            refused = storescu(settings.dicom.port, study[:1], calling="INTRUDER")
            assert refused.returncode != 0
            base = f"http://127.0.0.1:{node.http.port}{settings.http.root}"
            good = {"Authorization": f"Bearer {TOKEN}", "X-Calling-AE-Title": "VIEWER"}
            with httpx.Client(timeout=10) as client:
                found = client.get(
                    f"{base}/studies", params={"PatientID": patient_id}, headers=good
                )
                assert found.status_code == 200 and len(found.json()) == 1
                meta = client.get(f"{base}/studies/{study_uid}/metadata", headers=good)
                assert meta.status_code == 200
                wrong = client.get(f"{base}/studies", headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
        # the node has stopped: Application Stop is the last message it queued
        records = receiver.wait_for(
            lambda r: sum("110121" in x["xml"] for x in r) >= 1 and len(r) >= 7
        )

    assert records, "the receiver got nothing"
    assert {r["input"] for r in records} == {"imtcp"}  # the TLS listener only
    assert {(r["msgid"], r["pri"]) for r in records} == {("IHE+RFC-3881", "85")}
    parsed = [parse(r["xml"]) for r in records]  # each validates (schema + A.5.3 table)
    assert all(p.source_id for p in parsed)

    activity = _by_event(parsed, "110100")
    assert [sorted(p.event_types) for p in activity] == [["110120"], ["110121"]]

    transferred = _by_event(parsed, "110104")
    assert len(transferred) == 1, "one message per association and study, not per instance"
    received = transferred[0]
    assert (received.action, received.outcome) == ("C", 0)
    source, destination = received.with_role("110153")[0], received.with_role("110152")[0]
    assert (source.user_id, source.requestor, source.access_point) == ("PACS", True, "127.0.0.1")
    assert (destination.user_id, destination.requestor) == ("LSTV_NODE", False)
    assert received.objects_of("2")[0].object_id == patient_id
    study_object = received.objects_of("110180")[0]
    assert study_object.object_id == study_uid
    assert study_object.sop_classes == {str(header.SOPClassUID): len(study)}

    queries = _by_event(parsed, "110112")
    assert len(queries) == 1
    query = queries[0]
    assert query.outcome == 0
    assert query.with_role("110153")[0].user_id == "VIEWER"
    assert query.with_role("110153")[0].access_point == "127.0.0.1"
    assert query.with_role("110152")[0].user_id.endswith(settings.http.root)
    assert f"PatientID={patient_id}" in query.objects_of("110181")[0].query
    assert query.objects_of("2")[0].object_id == patient_id

    accessed = _by_event(parsed, "110103")
    assert len(accessed) == 1 and accessed[0].action == "R"
    assert accessed[0].objects_of("2")[0].object_id == patient_id

    alerts = _by_event(parsed, "110113")
    by_type = {next(iter(a.event_types)): a for a in alerts}
    assert set(by_type) == {"110126", "110132"}, alerts
    rejected = by_type["110126"]  # Node Authentication: the unknown calling AE
    assert rejected.outcome == 4 and "calling AE title not recognized" in rejected.description
    assert any(p.user_id == "INTRUDER" and p.requestor for p in rejected.participants)
    token = by_type["110132"]  # Use of Restricted Function: the wrong bearer token
    assert token.outcome == 4 and "wrong bearer token" in token.description
