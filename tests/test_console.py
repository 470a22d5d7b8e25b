"""The operator console over HTTP: the node's real FastAPI app and a real SQLite index.

A study is stored through the node's receiver (spool + index, as C-STORE does), its job is moved
through the real job store, and its results (a small SR and a Secondary Capture) are indexed as
the pipeline indexes them; a delivery is dead-lettered in the real outbox. Then: sign-in (wrong
password refused, CSRF on every POST, cookie flags, locked without a credential), every page,
no PHI unless ``console.show_patient``, and nothing secret or identifying in the logs.
"""

from __future__ import annotations

import io
import json
import logging
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scp_node.ingest.receiver import Origin
from scp_node.node import Node
from scp_node.store.index import InstanceRecord
from scp_node.store.jobs import QUEUED, JobStore
from scp_node.store.outbox import Outbox
from scp_node.web.console import auth, charts
from scp_node.web.console.auth import PRE_COOKIE, SESSION_COOKIE
from tests.conftest import node_settings, run_node
from tests.dicom_factory import mr_dataset

PASSWORD = "console-pass-0123456789"
TOKEN = "dicomweb-token-0123456789"
PATIENT_NAME, PATIENT_ID, ACCESSION = "TEST^SYNTHETIC", "SYN0001", "ACC777"
PAGES = ["/console/studies", "/console/outbox", "/console/system", "/console/charts"]


def _sc(study_uid: str, path: Path) -> Dataset:
    """A small RGB Secondary Capture, as the node's overlay is."""
    ds = _result(study_uid, "1.2.840.10008.5.1.4.1.1.7", "OT")
    ds.Rows, ds.Columns = 32, 48
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, :, 0] = 200
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def _code(meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "X1", "99TEST", meaning
    return Sequence([item])


def _sr(study_uid: str, path: Path) -> Dataset:
    """A tiny SR: a container with a TEXT and a NUM (the tree the study page shows)."""
    ds = _result(study_uid, "1.2.840.10008.5.1.4.1.1.88.33", "SR")
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = _code("Imaging Measurement Report")
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.ConceptNameCodeSequence, text.TextValue = _code("Comment"), "No LSTV suspected"
    num = Dataset()
    num.RelationshipType, num.ValueType = "CONTAINS", "NUM"
    num.ConceptNameCodeSequence = _code("LSTV score")
    value = Dataset()
    value.NumericValue = "0.1234"
    value.MeasurementUnitsCodeSequence = _code("no units")
    value.MeasurementUnitsCodeSequence[0].CodeValue = "1"
    num.MeasuredValueSequence = Sequence([value])
    ds.ContentSequence = Sequence([text, num])
    ds.save_as(path, enforce_file_format=True)
    return ds


def _result(study_uid: str, sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT_NAME, PATIENT_ID, modality
    return ds


RESULT = {
    "study_instance_uid": "",
    "applicable": True,
    "series_instance_uid": "",
    "levels": [
        {
            "level": "L5-S1",
            "sop_instance_uid": "1.2.3",
            "slice_index": 1,
            "pixel_xy": [10.0, 20.0],
            "patient_xyz": [0, 0, 0],
            "peak_confidence": 0.91,
            "entropy": 2.5,
            "spatial_entropy": 1.2,
            "predictive_entropy": 0.3,
            "mutual_information": 0.05,
            "frame_number": None,
        }
    ],
    "lstv_score": 0.1234,
    "lstv_threshold": 0.5,
    "lstv_suspected": False,
    "needs_review": False,
    "assessable": True,
    "calibration": "weights default",
    "model": {"name": "lstv-localizer", "version": "9.9", "weights_sha256": "ab" * 32},
    "device": "cpu",
    "inference_ms": 250.0,
    "warnings": [],
}


def _populate(node: Node, tmp_path: Path) -> dict[str, str]:
    """One received study (3 MR instances) with a result, an SR, an SC and a dead delivery."""
    study_uid = generate_uid()
    series = None
    sops = []
    for i in range(3):
        ds = mr_dataset(size=32, seed=i, study_uid=study_uid)
        if series:
            ds.SeriesInstanceUID = series
        series = str(ds.SeriesInstanceUID)
        sops.append(str(ds.SOPInstanceUID))
        ds.AccessionNumber = ACCESSION
        path = tmp_path / f"in{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        node.receiver.store_part10_file(path, Origin(calling_ae="PACS", peer="127.0.0.1:1"))
    jobs = JobStore(node.db)
    jobs.sync_from_studies()
    jobs.request_complete([study_uid])
    jobs.complete_due(quiet_seconds=10, max_wait_seconds=600)
    job = jobs.claim_next()
    assert job is not None
    levels = [{**RESULT["levels"][0], "sop_instance_uid": sops[0]}]  # type: ignore[index]
    result = {
        **RESULT,
        "study_instance_uid": study_uid,
        "series_instance_uid": series,
        "levels": levels,
    }
    assert jobs.advance(job, QUEUED, "", result)
    results = tmp_path / "results"
    results.mkdir()
    sr, sc = _sr(study_uid, results / "sr.dcm"), _sc(study_uid, results / "sc.dcm")
    for ds, path in ((sr, results / "sr.dcm"), (sc, results / "sc.dcm")):
        node.index.add(
            InstanceRecord(
                sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
                study_uid=study_uid, series_uid=str(ds.SeriesInstanceUID),
                transfer_syntax=ExplicitVRLittleEndian, path=path, size=path.stat().st_size,
                modality=str(ds.Modality), source="result", received_at=time.time(),
            ),
            touch_study=False,
        )  # fmt: skip
    outbox = Outbox(node.db)
    row_id = outbox.enqueue(
        study_uid, str(sr.SOPInstanceUID), str(sr.SOPClassUID), results / "sr.dcm", "pacs"
    )
    [claimed] = outbox.claim_due(ids=[row_id])
    assert outbox.mark_failed(claimed, "association refused", retry_at=None)
    return {
        "study": study_uid,
        "row": str(row_id),
        "sr": str(sr.SOPInstanceUID),
        "sc": str(sc.SOPInstanceUID),
    }


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[TestClient, Node, dict[str, str]]]:
    settings = node_settings(
        tmp_path, console={"password": PASSWORD}, http={"auth": "token", "token": TOKEN}
    )
    node = Node(settings)  # not started: the app and the index are what is tested
    try:
        facts = _populate(node, tmp_path)
        with TestClient(node.http.app, base_url="http://127.0.0.1") as client:
            yield client, node, facts
    finally:
        node.db.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, password: str = PASSWORD) -> str:
    """Sign in; returns the session's CSRF token (from the first page)."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    reply = client.post(
        "/console/sign-in",
        data={"password": password, "csrf": _csrf(form.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    return _csrf(client.get("/console/studies").text)


def test_pages_need_a_session(console) -> None:
    client, _, facts = console
    for path in [*PAGES, f"/console/studies/{facts['study']}"]:
        reply = client.get(path, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == "/console/sign-in"
    assert client.get(f"/console/studies/{facts['study']}/overlay.png").status_code == 403


def test_wrong_password_is_refused(console, caplog) -> None:
    client, _, _ = console
    caplog.set_level(logging.INFO, logger="scp_node")
    form = client.get("/console/sign-in")
    reply = client.post(
        "/console/sign-in",
        data={"password": "not-the-password", "csrf": _csrf(form.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 401
    assert "Wrong password" in reply.text
    assert SESSION_COOKIE not in reply.cookies
    assert client.get("/console/studies", follow_redirects=False).status_code == 303
    assert "console sign-in refused" in caplog.text
    assert "not-the-password" not in caplog.text


def test_sign_in_with_password_or_dicomweb_token_and_the_audit_seam(console) -> None:
    client, _, _ = console
    seen: list[tuple[bool, str, str]] = []
    auth.add_sign_in_hook(lambda ok, user, peer: seen.append((ok, user, peer)))
    try:
        sign_in(client)
        client.cookies.clear()
        sign_in(client, TOKEN)
    finally:
        auth._hooks.clear()
    assert [(ok, user) for ok, user, _ in seen] == [(True, "console"), (True, "dicomweb-token")]
    assert all(peer.startswith("testclient") or "127.0.0.1" in peer for *_, peer in seen)


def test_session_cookie_flags(console) -> None:
    client, _, _ = console
    form = client.get("/console/sign-in")
    reply = client.post(
        "/console/sign-in",
        data={"password": PASSWORD, "csrf": _csrf(form.text)},
        follow_redirects=False,
    )
    cookie = next(
        v for k, v in reply.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE + "=" in v
    )
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "secure" not in flags  # plain HTTP here; under HTTPS, see the next test


def test_session_cookie_is_secure_under_https(console) -> None:
    _, node, _ = console
    with TestClient(node.http.app, base_url="https://127.0.0.1") as client:
        form = client.get("/console/sign-in")
        reply = client.post(
            "/console/sign-in",
            data={"password": PASSWORD, "csrf": _csrf(form.text)},
            follow_redirects=False,
        )
    cookie = next(
        v for k, v in reply.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE + "=" in v
    )
    assert "secure" in [p.strip().lower() for p in cookie.split(";")]


def test_session_cookie_is_secure_over_real_tls(tmp_path: Path) -> None:
    """The node's own HTTPS listener (uvicorn with the configured certificate), over a socket."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = node_settings(
        tmp_path,
        http={"port": 0, "tls_cert_file": str(cert), "tls_key_file": str(key)},
        console={"password": PASSWORD},
    )
    with (
        run_node(settings) as node,
        httpx.Client(
            base_url=f"https://127.0.0.1:{node.http.port}",
            verify=ssl.create_default_context(cafile=cert),
        ) as client,
    ):
        form = client.get("/console/sign-in")
        reply = client.post(
            "/console/sign-in", data={"password": PASSWORD, "csrf": _csrf(form.text)}
        )
        assert reply.status_code == 303
        cookie = next(v for v in reply.headers.get_list("set-cookie") if SESSION_COOKIE + "=" in v)
        parts = [p.strip().lower() for p in cookie.split(";")]
        assert {"secure", "httponly", "samesite=strict", "path=/console"} <= set(parts)


def test_every_post_needs_the_csrf_token(console) -> None:
    client, node, facts = console
    form = client.get("/console/sign-in")
    assert client.cookies.get(PRE_COOKIE)
    no_token = client.post("/console/sign-in", data={"password": PASSWORD})
    assert no_token.status_code == 403
    assert client.get("/console/studies", follow_redirects=False).status_code == 303
    wrong = client.post("/console/sign-in", data={"password": PASSWORD, "csrf": "x" * 43})
    assert wrong.status_code == 403
    assert _csrf(form.text)
    token = sign_in(client)
    row = facts["row"]
    for path in [f"/console/outbox/{row}/retry", "/console/outbox/retry-dead", "/console/sign-out"]:
        assert client.post(path, follow_redirects=False).status_code == 403, path
        bad = client.post(path, data={"csrf": token[::-1]}, follow_redirects=False)
        assert bad.status_code == 403, path
    assert Outbox(node.db).get(int(row)).state == "dead"  # nothing happened
    assert client.get("/console/studies").status_code == 200  # still signed in


def test_retry_a_dead_letter(console) -> None:
    client, node, facts = console
    token = sign_in(client)
    page = client.get("/console/outbox")
    assert f'action="/console/outbox/{facts["row"]}/retry"' in page.text
    assert "association refused" in page.text
    reply = client.post(
        f"/console/outbox/{facts['row']}/retry", data={"csrf": token}, follow_redirects=False
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/console/outbox?retried=1"
    row = Outbox(node.db).get(int(facts["row"]))
    assert row is not None and row.state == "pending" and row.attempts == 0
    assert "1 delivery reset to pending" in client.get(reply.headers["location"]).text
    again = client.post(  # now pending, not dead: the console retries dead letters only
        f"/console/outbox/{facts['row']}/retry", data={"csrf": token}, follow_redirects=False
    )
    assert again.headers["location"] == "/console/outbox?retried=0"
    assert client.get("/console/studies/1.2.3.4.5").status_code == 404


def test_sign_out_ends_the_session(console) -> None:
    client, _, _ = console
    token = sign_in(client)
    reply = client.post("/console/sign-out", data={"csrf": token}, follow_redirects=False)
    assert reply.status_code == 303
    assert client.get("/console/studies", follow_redirects=False).status_code == 303


def test_pages_show_the_study_without_phi(console, caplog) -> None:
    client, _, facts = console
    caplog.set_level(logging.DEBUG, logger="scp_node")
    sign_in(client)
    study = client.get(f"/console/studies/{facts['study']}")
    assert study.status_code == 200
    for text in ("No LSTV suspected", "0.123", "vs 0.500", ACCESSION, "L5-S1", "0.910"):
        assert text in study.text, text
    assert "Imaging Measurement Report" in study.text and "LSTV score" in study.text  # SR tree
    assert "T2 SAG" in study.text and "(chosen)" in study.text  # the series, by description
    assert "association refused" in study.text and ">dead<" in study.text  # its deliveries
    png = client.get(f"/console/studies/{facts['study']}/overlay.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    studies = client.get("/console/studies")
    assert facts["study"] in studies.text and "queued" in studies.text
    pages = [client.get(p) for p in PAGES] + [study]
    for reply in pages:
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in reply.headers["content-security-policy"]
        for secret in (PATIENT_NAME, PATIENT_ID, PASSWORD, TOKEN):
            assert secret not in reply.text, (reply.url, secret)
    for secret in (PATIENT_NAME, PATIENT_ID, ACCESSION, PASSWORD, TOKEN):
        assert secret not in caplog.text
    for reply in pages:  # and no URL the pages link to carries them
        for url in re.findall(r'(?:href|src|action)="([^"]+)"', reply.text):
            assert PATIENT_ID not in url and ACCESSION not in url


def _study_page_with(client, node, study: str, **changes: object) -> str:
    """The console's study page after ``changes`` to the study's stored result."""
    connection = node.db.connection()
    row = connection.execute(
        "SELECT result_json FROM jobs WHERE study_uid = ?", (study,)
    ).fetchone()
    changed = {**json.loads(row[0]), **changes}
    connection.execute(
        "UPDATE jobs SET result_json = ? WHERE study_uid = ?", (json.dumps(changed), study)
    )
    sign_in(client)
    return client.get(f"/console/studies/{study}").text


def test_a_finding_shows_the_evidence_behind_it(console) -> None:
    client, node, facts = console
    said = "L5-S1 disc signal 0.58 of the discs above: a rudimentary or absent disc"
    page = _study_page_with(client, node, facts["study"], lstv_suspected=True, evidence=[said])
    assert "Evidence behind the finding" in page and said in page


def test_a_held_back_finding_says_why_on_the_study_page(console) -> None:
    client, node, facts = console
    why = "localizer uncertain at the lumbosacral junction, but its L5-S1 disc looks like the"
    page = _study_page_with(
        client, node, facts["study"], lstv_suspected=False, needs_review=True, held_back=why
    )
    assert "Finding held back because" in page and why in page
    assert "No LSTV suspected, needs review" in page


def test_without_a_secondary_capture_the_chosen_slice_is_drawn(console) -> None:
    client, node, facts = console
    node.db.connection().execute(
        "DELETE FROM instances WHERE sop_instance_uid = ?", (facts["sc"],)
    )  # as if report.secondary_capture = false
    sign_in(client)
    page = client.get(f"/console/studies/{facts['study']}").text
    assert 'id="overlay"' in page and "disc points drawn here" in page
    png = client.get(f"/console/studies/{facts['study']}/overlay.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(png.content))
    assert image.mode == "RGB" and min(image.size) >= 512  # upscaled like the SC


def test_show_patient_puts_name_and_id_on_the_study_page_only(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, console={"password": PASSWORD, "show_patient": True})
    node = Node(settings)
    try:
        facts = _populate(node, tmp_path)
        with TestClient(node.http.app, base_url="http://127.0.0.1") as client:
            sign_in(client)
            study = client.get(f"/console/studies/{facts['study']}").text
            assert PATIENT_NAME in study and PATIENT_ID in study
            for path in PAGES:
                text = client.get(path).text
                assert PATIENT_NAME not in text and PATIENT_ID not in text, path
    finally:
        node.db.close()


def test_console_is_locked_without_a_credential(tmp_path: Path) -> None:
    node = Node(node_settings(tmp_path))  # no console.password, no http.token
    try:
        with TestClient(node.http.app) as client:
            page = client.get("/console/sign-in")
            assert page.status_code == 403 and "locked" in page.text
            reply = client.post("/console/sign-in", data={"password": ""})
            assert reply.status_code == 403
            assert client.get("/console/studies", follow_redirects=False).status_code == 303
    finally:
        node.db.close()


def test_repeated_failures_are_throttled(console) -> None:
    client, _, _ = console
    token = _csrf(client.get("/console/sign-in").text)
    codes = [
        client.post("/console/sign-in", data={"password": f"x{i}", "csrf": token}).status_code
        for i in range(auth.MAX_FAILURES + 1)
    ]
    assert codes[: auth.MAX_FAILURES] == [401] * auth.MAX_FAILURES and codes[-1] == 429
    right = client.post("/console/sign-in", data={"password": PASSWORD, "csrf": token})
    assert right.status_code == 429  # even the right password waits


def test_filters(console) -> None:
    client, _, facts = console
    sign_in(client)
    assert facts["study"] in client.get("/console/studies?state=queued&sender=PACS").text
    assert facts["study"] in client.get("/console/studies?verdict=not_suspected").text
    for query in ("state=delivered", "sender=OTHER", "verdict=suspected", "date=2001-01-01"):
        assert facts["study"] not in client.get(f"/console/studies?{query}").text, query
    # values that are not a state, verdict or date are ignored, not passed on
    assert facts["study"] in client.get("/console/studies?state=x'--&date=junk").text


def test_system_page_masks_secrets_and_shows_decoders(console) -> None:
    client, _, _ = console
    sign_in(client)
    page = client.get("/console/system").text
    assert "console.password" in page and "(set, hidden)" in page
    assert "http.token" in page
    assert "JPEG 2000 Image Compression (Lossless Only)" in page  # the decoder table
    assert "lstv-localizer" in page and "ab" * 32 in page  # model identity from the result


def test_charts_render_svg(console) -> None:
    client, node, facts = console
    now = time.time()
    node.db.connection().execute(
        "UPDATE jobs SET state = 'delivered', delivered_at = ? WHERE study_uid = ?",
        (now, facts["study"]),
    )
    sign_in(client)
    page = client.get("/console/charts").text
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 4
    assert all('class="bar"' in s or 'class="dot"' in s for s in svgs)
    assert 'class="marker"' in svgs[2]  # the threshold on the score histogram


def test_chart_helpers() -> None:
    assert charts.nice_ticks(0, 7, 4) == [0, 2, 4, 6, 8]
    assert charts.nice_ticks(0.11, 0.52) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    empty = charts.histogram([], title="t", x_label="x", ident="e")
    assert "No data yet" in empty and "<rect" in empty
    svg = charts.histogram([1, 2, 2, 3], title="a<b", x_label="s", ident="h", marker=2.5)
    assert "a&lt;b" in svg and svg.count('class="bar"') == 3


def test_sign_in_and_out_are_audited(tmp_path: Path) -> None:
    """User Authentication (PS3.15 A.5.3.12) in the node's audit trail (the default JSON-lines
    file): a refused sign-in (minor failure), a sign-in and a sign-out, with the client address."""
    from scp_node.audit.trail import default_paths
    from tests.audit_rules import parse

    settings = node_settings(tmp_path, console={"password": PASSWORD})
    with (
        run_node(settings) as node,
        httpx.Client(base_url=f"http://127.0.0.1:{node.http.port}") as client,
    ):
        token = _csrf(client.get("/console/sign-in").text)
        wrong = client.post("/console/sign-in", data={"password": "nope", "csrf": token})
        assert wrong.status_code == 401
        assert client.post(
            "/console/sign-in", data={"password": PASSWORD, "csrf": token}
        ).is_redirect
        csrf = _csrf(client.get("/console/studies").text)
        assert client.post("/console/sign-out", data={"csrf": csrf}).is_redirect
        time.sleep(0.5)
    path, _ = default_paths(settings)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    signins = [parse(x["xml"]) for x in lines if x["event"] == "user-authentication"]
    assert [(m.outcome, m.event_types) for m in signins] == [
        (4, {"110122"}),  # Login, minor failure
        (0, {"110122"}),  # Login
        (0, {"110123"}),  # Logout
    ]
    assert [m.participants[0].user_id for m in signins] == ["console", "console", "console"]
    assert "nope" not in path.read_text("utf-8") and PASSWORD not in path.read_text("utf-8")
