"""DICOMweb over real sockets: a node with uvicorn on 127.0.0.1; httpx and dicomweb-client clients.

Covers STOW-RS (PS3.18 §10.5) success / partial / failure and its limits, QIDO-RS, WADO-RS,
bearer-token auth and the /healthz /readyz /metrics probes. See docs/dicomweb.md.
"""

from __future__ import annotations

import io
import random
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicom_factory import mr_dataset
from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEG2000Lossless, generate_uid

from scp_node.codecs import capabilities
from scp_node.node import Node
from scp_node.web.multipart import (
    MultipartError,
    MultipartParser,
    PartBegin,
    PartData,
    PartEnd,
)
from tests.conftest import node_settings, run_node

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUNDARY = "scpnode-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
UNDECODABLE = UID("1.2.840.10008.1.2.4.92")  # JPEG 2000 Part 2 multi-component (lossless only)


# --- helpers -------------------------------------------------------------------------------------


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mr(study: str, seed: int = 0, **attrs: Any) -> Dataset:
    ds = mr_dataset(seed=seed, study_uid=study)
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def j2k(study: str, seed: int = 0) -> Dataset:
    ds = mr(study, seed)
    ds.compress(JPEG2000Lossless)
    return ds


def undecodable(study: str) -> Dataset:
    """A J2K lossless image labelled with a syntax pydicom knows but the node does not accept."""
    ds = j2k(study, seed=99)
    ds.file_meta.TransferSyntaxUID = UNDECODABLE
    return ds


def multipart(parts: list[bytes], content_type: str = "application/dicom") -> bytes:
    body = b"".join(
        f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return body + f"--{BOUNDARY}--\r\n".encode()


def stow(base: str, parts: list[bytes], study: str | None = None, **kw: Any) -> httpx.Response:
    url = f"{base}/dicom-web/studies" + (f"/{study}" if study else "")
    headers = {"Content-Type": STOW_TYPE, **AUTH, **kw.pop("headers", {})}
    return httpx.post(url, content=multipart(parts), headers=headers, timeout=30, **kw)


def seq(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return list(answer.get(tag, {}).get("Value", []))


def value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def refused_count(status: str) -> float:
    from prometheus_client import REGISTRY

    got = REGISTRY.get_sample_value(
        "scp_node_instances_refused_total", {"status": status, "source": "stow"}
    )
    return got or 0.0


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("web")
    settings = node_settings(
        tmp,
        http={"port": 0, "auth": "token", "token": TOKEN, "max_request_mb": 1, "max_parts": 5},
    )
    with run_node(settings) as running:
        yield running


@pytest.fixture(scope="module")
def base(node: Node) -> str:
    return f"http://127.0.0.1:{node.http.port}"


# --- the multipart parser alone ------------------------------------------------------------------


def test_multipart_parser_any_chunking() -> None:
    rng = random.Random(7)
    parts = [b"", b"x", rng.randbytes(5000), b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n"]
    body = b"preamble\r\n" + multipart(parts) + b"epilogue"
    for trial in range(200):
        parser, got, current = MultipartParser(BOUNDARY), [], bytearray()
        pos = 0
        while pos < len(body):
            size = rng.randint(1, 40 if trial % 2 else 3000)
            for event in parser.feed(body[pos : pos + size]):
                if isinstance(event, PartBegin):
                    assert event.headers == {"content-type": "application/dicom"}
                    current = bytearray()
                elif isinstance(event, PartData):
                    current += event.data
                elif isinstance(event, PartEnd):
                    got.append(bytes(current))
            pos += size
        parser.close()
        assert got == parts
    truncated = MultipartParser(BOUNDARY)
    truncated.feed(multipart(parts)[:-10])
    with pytest.raises(MultipartError):
        truncated.close()


# --- STOW-RS -------------------------------------------------------------------------------------


def test_stow_stores_every_instance_and_lists_each(node: Node, base: str) -> None:
    study = generate_uid()
    datasets = [mr(study, 1), mr(study, 2), j2k(study, 3)]
    calls: list[set[str]] = []
    node.http.on_stow_complete = calls.append
    try:
        answer = stow(base, [part10(d) for d in datasets], study)
    finally:
        node.http.on_stow_complete = None
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom+json"
    body = answer.json()
    items = seq(body, "00081199")
    assert {value(i, "00081155") for i in items} == {d.SOPInstanceUID for d in datasets}
    for item in items:
        assert value(item, "00081150") == "1.2.840.10008.5.1.4.1.1.4"
        assert value(item, "00081190").startswith(f"{base}/dicom-web/studies/{study}/series/")
    assert "00081198" not in body
    assert calls == [{study}]
    for ds in datasets:
        record = node.index.get(ds.SOPInstanceUID)
        assert record is not None and record.source == "stow" and record.peer.startswith("127.")
        assert record.path.is_file()
        assert pydicom.dcmread(record.path).SOPInstanceUID == ds.SOPInstanceUID
    j2k_record = node.index.get(datasets[2].SOPInstanceUID)
    assert j2k_record is not None and j2k_record.transfer_syntax == JPEG2000Lossless


def test_stow_undecodable_part_is_a_failed_part_and_good_parts_are_kept(
    node: Node, base: str
) -> None:
    assert UNDECODABLE not in capabilities().accepted_transfer_syntaxes()
    study = generate_uid()
    good = [mr(study, 4), mr(study, 5)]
    bad = undecodable(study)
    before = refused_count("0xC122")
    answer = stow(base, [part10(good[0]), part10(bad), part10(good[1])])
    assert answer.status_code == 202, answer.text
    failed = seq(answer.json(), "00081198")
    assert len(failed) == 1
    assert value(failed[0], "00081197") == 0xC122
    assert value(failed[0], "00081155") == bad.SOPInstanceUID
    stored = {value(i, "00081155") for i in seq(answer.json(), "00081199")}
    assert stored == {d.SOPInstanceUID for d in good}
    records = [node.index.get(d.SOPInstanceUID) for d in good]
    assert all(r is not None and r.path.is_file() for r in records)
    assert node.index.get(bad.SOPInstanceUID) is None
    assert refused_count("0xC122") == before + 1


def test_stow_other_study_than_url_fails_with_a900(node: Node, base: str) -> None:
    url_study, other = generate_uid(), generate_uid()
    ds = mr(other, 6)
    answer = stow(base, [part10(ds)], url_study)
    assert answer.status_code == 409, answer.text
    failed = seq(answer.json(), "00081198")
    assert [value(f, "00081197") for f in failed] == [0xA900]
    assert node.index.get(ds.SOPInstanceUID) is None


def test_stow_non_dicom_part_is_a_failed_part(node: Node, base: str) -> None:
    study = generate_uid()
    good = mr(study, 7)
    answer = stow(base, [b"this is not DICOM at all", part10(good)])
    assert answer.status_code == 202, answer.text
    assert [value(f, "00081197") for f in seq(answer.json(), "00081198")] == [0xC100]
    assert node.index.get(good.SOPInstanceUID) is not None


def test_stow_bad_requests(base: str) -> None:
    url = f"{base}/dicom-web/studies"
    data = part10(mr(generate_uid(), 8))
    wrong_type = httpx.post(
        url, content=data, headers={"Content-Type": "application/dicom", **AUTH}
    )
    assert wrong_type.status_code == 415
    xml = STOW_TYPE.replace("application/dicom", "application/dicom+xml")
    assert httpx.post(url, content=data, headers={"Content-Type": xml, **AUTH}).status_code == 415
    garbage = httpx.post(url, content=b"hello", headers={"Content-Type": STOW_TYPE, **AUTH})
    assert garbage.status_code == 400
    no_parts = httpx.post(
        url, content=f"--{BOUNDARY}--\r\n".encode(), headers={"Content-Type": STOW_TYPE, **AUTH}
    )
    assert no_parts.status_code == 400


def test_stow_declared_oversize_is_413_before_reading(node: Node, base: str) -> None:
    port = node.http.port
    request = (
        f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: {STOW_TYPE}\r\n"
        f"Content-Length: {10 * 2**30}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)  # headers only: the 10 GiB body is never sent
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert b" 413 " in status_line


def test_stow_streamed_oversize_is_413_and_keeps_only_complete_parts(node: Node, base: str) -> None:
    study = generate_uid()
    first = mr(study, 9)
    big = mr_dataset(size=1024, seed=10, study_uid=study)  # 2 MiB of pixels > 1 MiB limit
    body = multipart([part10(first), part10(big)])

    def chunks() -> Iterator[bytes]:
        for pos in range(0, len(body), 65536):
            yield body[pos : pos + 65536]

    answer = httpx.post(
        f"{base}/dicom-web/studies",
        content=chunks(),
        headers={"Content-Type": STOW_TYPE, **AUTH},
        timeout=30,
    )
    assert answer.status_code == 413
    assert "content-length" not in {k.lower() for k in answer.request.headers}  # really chunked
    assert [value(i, "00081155") for i in seq(answer.json(), "00081199")] == [first.SOPInstanceUID]
    assert node.index.get(first.SOPInstanceUID) is not None
    assert node.index.get(big.SOPInstanceUID) is None
    assert list(node.spool.tmp_dir.glob("*.part")) == []


def test_stow_too_many_parts_is_413(node: Node, base: str) -> None:
    study = generate_uid()
    answer = stow(base, [part10(mr(study, 20 + i)) for i in range(6)])  # max_parts = 5
    assert answer.status_code == 413
    assert len(seq(answer.json(), "00081199")) == 5


# --- auth and probes -----------------------------------------------------------------------------


def test_token_required_on_dicomweb_only(base: str) -> None:
    url = f"{base}/dicom-web/studies"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
    posted = httpx.post(url, content=b"x", headers={"Content-Type": STOW_TYPE})
    assert posted.status_code == 401
    assert httpx.get(url, headers=AUTH).status_code in (200, 204)
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").json() == {"dicom_listener": True, "index": True}
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert "scp_node_instances_received_total" in metrics.text


def test_token_auth_without_token_locks_dicomweb(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, http={"port": 0, "auth": "token", "token": None})
    locked = Node(settings)
    locked.start()
    try:
        base = f"http://127.0.0.1:{locked.http.port}"
        answer = httpx.get(f"{base}/dicom-web/studies", headers={"Authorization": "Bearer guess"})
        assert answer.status_code == 401 and "locked" in answer.text
        assert httpx.get(f"{base}/readyz").status_code == 200
        locked.dimse.stop()  # the DICOM listener goes down: not ready any more
        assert httpx.get(f"{base}/readyz").status_code == 503
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        locked.stop()


def test_https_with_configured_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = node_settings(
        tmp_path, http={"port": 0, "tls_cert_file": str(cert), "tls_key_file": str(key)}
    )
    secure = Node(settings)
    secure.start()
    try:
        url = f"https://127.0.0.1:{secure.http.port}/healthz"
        assert httpx.get(url, verify=ssl.create_default_context(cafile=cert)).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https", "http"), timeout=3)
    finally:
        secure.stop()


# --- QIDO-RS and WADO-RS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_study(base: str) -> tuple[str, list[Dataset]]:
    study = generate_uid()
    series = generate_uid()
    datasets = [mr(study, 30 + i, PatientID="QIDO-PAT", SeriesInstanceUID=series) for i in range(3)]
    for number, ds in enumerate(datasets, 1):
        ds.InstanceNumber = number
    assert stow(base, [part10(d) for d in datasets]).status_code == 200
    return study, datasets


def test_qido_matching_paging_includefield(base: str, stored_study: tuple[str, list]) -> None:
    study, datasets = stored_study
    api = f"{base}/dicom-web"
    studies = httpx.get(f"{api}/studies", params={"PatientID": "QIDO-PAT"}, headers=AUTH).json()
    assert [value(s, "0020000D") for s in studies] == [study]
    assert value(studies[0], "00201208") == 3  # NumberOfStudyRelatedInstances
    assert value(studies[0], "00080061") == "MR"
    assert value(studies[0], "00100010") == {"Alphabetic": "TEST^SYNTHETIC"}
    by_tag = httpx.get(f"{api}/studies", params={"00100020": "QIDO-*"}, headers=AUTH).json()
    assert [value(s, "0020000D") for s in by_tag] == [study]
    none = httpx.get(f"{api}/studies", params={"PatientID": "NOBODY"}, headers=AUTH)
    assert none.status_code == 204 and none.content == b""
    series = httpx.get(f"{api}/studies/{study}/series", params={"Modality": "MR"}, headers=AUTH)
    assert [value(s, "0020000E") for s in series.json()] == [datasets[0].SeriesInstanceUID]
    wrong_modality = httpx.get(f"{api}/studies/{study}/series?Modality=CT", headers=AUTH)
    assert wrong_modality.status_code == 204
    page = httpx.get(
        f"{api}/studies/{study}/series/{datasets[0].SeriesInstanceUID}/instances",
        params=[("limit", "2"), ("offset", "1"), ("includefield", "SeriesDescription,00100040"),
                ("includefield", "PatientName")],
        headers=AUTH,
    ).json()  # fmt: skip
    assert len(page) == 2
    assert value(page[0], "0008103E") == "T2 SAG"
    assert "00100010" in page[0]
    every = httpx.get(f"{api}/instances", params={"StudyInstanceUID": study}, headers=AUTH).json()
    assert {value(i, "00080018") for i in every} == {d.SOPInstanceUID for d in datasets}
    ignored = httpx.get(f"{api}/studies", params={"PatientName": "X*"}, headers=AUTH)
    assert ignored.headers["warning"].startswith("299 ")
    assert httpx.get(f"{api}/studies?limit=-1", headers=AUTH).status_code == 400


def parse_multipart(response: httpx.Response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    parser, out, current = MultipartParser(boundary), [], bytearray()
    for event in parser.feed(response.content):
        if isinstance(event, PartBegin):
            assert event.headers["content-type"].startswith("application/dicom")
            current = bytearray()
        elif isinstance(event, PartData):
            current += event.data
        else:
            out.append(bytes(current))
    parser.close()
    return out


def test_wado_instance_series_study_and_metadata(base: str, stored_study: tuple[str, list]) -> None:
    study, datasets = stored_study
    first = datasets[0]
    url = f"{base}/dicom-web/studies/{study}/series/{first.SeriesInstanceUID}"
    one = httpx.get(f"{url}/instances/{first.SOPInstanceUID}", headers=AUTH)
    assert one.status_code == 200
    assert one.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    [got] = parse_multipart(one)
    ds = pydicom.dcmread(io.BytesIO(got))
    assert ds.SOPInstanceUID == first.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, first.pixel_array)
    assert len(parse_multipart(httpx.get(url, headers=AUTH))) == 3
    assert len(parse_multipart(httpx.get(f"{base}/dicom-web/studies/{study}", headers=AUTH))) == 3
    meta = httpx.get(f"{url}/instances/{first.SOPInstanceUID}/metadata", headers=AUTH)
    assert meta.headers["content-type"] == "application/dicom+json"
    [item] = meta.json()
    assert value(item, "00080018") == first.SOPInstanceUID and "7FE00010" not in item
    assert len(httpx.get(f"{base}/dicom-web/studies/{study}/metadata", headers=AUTH).json()) == 3
    missing = httpx.get(f"{url}/instances/1.2.3.999", headers=AUTH)
    assert missing.status_code == 404
    j2k_only = "1.2.840.10008.1.2.4.90"
    other_syntax = {
        "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={j2k_only}'
    }
    assert httpx.get(url, headers={**AUTH, **other_syntax}).status_code == 406


def test_dicomweb_client_store_search_retrieve(base: str) -> None:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(f"{base}/dicom-web", headers=AUTH)
    study = generate_uid()
    datasets = [mr(study, 40), j2k(study, 41)]
    answer = client.store_instances(datasets)
    assert {i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence} == {
        d.SOPInstanceUID for d in datasets
    }
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert [Dataset.from_json(f).StudyInstanceUID for f in found] == [study]
    assert client.search_for_studies(search_filters={"PatientID": "NO-SUCH"}) == []
    instances = client.search_for_instances(study_instance_uid=study)
    assert len(instances) == 2
    first = datasets[0]
    got = client.retrieve_instance(study, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert got.SOPInstanceUID == first.SOPInstanceUID
    assert np.array_equal(got.pixel_array, first.pixel_array)
    meta = client.retrieve_instance_metadata(study, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert Dataset.from_json(meta).SOPInstanceUID == first.SOPInstanceUID


def test_stow_throughput_100_instances(node: Node, base: str) -> None:
    """Not a speed gate: prints instances/s (docs/dicomweb.md) and checks every one is kept."""
    study = generate_uid()
    datasets = [mr(study, 100 + i) for i in range(100)]
    started = time.perf_counter()
    for batch in range(0, 100, 5):  # max_parts = 5 on this node
        assert stow(base, [part10(d) for d in datasets[batch : batch + 5]]).status_code == 200
    elapsed = time.perf_counter() - started
    print(f"STOW-RS: 100 instances of 8 KiB in {elapsed:.2f} s ({100 / elapsed:.0f}/s)")
    assert len(node.index.for_study(study)) == 100
