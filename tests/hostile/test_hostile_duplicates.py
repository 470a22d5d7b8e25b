"""The same SOP Instance UID twice (issue 13 D5): writes serialised, index and file agree."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

from scp_node.ingest.spool_check import check_spool
from scp_node.node import Node
from tests.conftest import node_settings, run_node
from tests.dicom_factory import mr_dataset


def send(port: int, ds, results: list[int], barrier: threading.Barrier | None = None) -> None:
    ae = AE(ae_title="PACS")
    ae.requested_contexts = [
        build_context(MRImageStorage, [ds.file_meta.TransferSyntaxUID]),
    ]
    assoc = ae.associate("127.0.0.1", port, ae_title="LSTV_NODE")
    assert assoc.is_established
    try:
        if barrier is not None:
            barrier.wait(timeout=10)
        results.append(int(assoc.send_c_store(ds).Status))
    finally:
        assoc.release()


def variant(base, syntax: str, patient: str, extra: int):
    ds = copy.deepcopy(base)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PatientID = patient
    ds.ImageComments = "x" * extra  # a different size too
    return ds


def assert_consistent(node: Node) -> None:
    report = check_spool(node.spool.root, node.index)
    assert report.ok, "\n".join(report.lines())
    assert not report.temp_files


def test_concurrent_same_uid_index_and_file_agree(tmp_path: Path) -> None:
    """Two associations store one SOP Instance UID with different content at the same moment,
    10 times: the index row always describes the file on disk, and nothing is orphaned."""
    settings = node_settings(tmp_path)
    with run_node(settings) as node:
        for trial in range(10):
            base = mr_dataset(size=64, seed=trial)
            a = variant(base, ExplicitVRLittleEndian, "PATIENT_A", 10)
            b = variant(base, ImplicitVRLittleEndian, "PATIENT_B", 12)
            results: list[int] = []
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=send, args=(settings.dicom.port, ds, results, barrier))
                for ds in (a, b)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert results == [0, 0]
            record = node.index.get(str(base.SOPInstanceUID))
            assert record is not None
            on_disk = dcmread(record.path)
            assert str(on_disk.file_meta.TransferSyntaxUID) == record.transfer_syntax
            assert on_disk.PatientID == record.patient_id
            assert record.path.stat().st_size == record.size
        assert_consistent(node)


def test_same_uid_in_another_study_is_refused_and_the_first_kept(tmp_path: Path) -> None:
    """Policy (conformance statement): a UID stays in the study and series it came in; the
    same UID in another study or series is refused with 0x0111 (Duplicate SOP Instance)."""
    settings = node_settings(tmp_path)
    with run_node(settings) as node:
        first = mr_dataset(seed=1)
        results: list[int] = []
        send(settings.dicom.port, first, results)
        other_study = copy.deepcopy(first)
        other_study.StudyInstanceUID = generate_uid()
        send(settings.dicom.port, other_study, results)
        other_series = copy.deepcopy(first)
        other_series.SeriesInstanceUID = generate_uid()
        send(settings.dicom.port, other_series, results)
        same_again = copy.deepcopy(first)
        same_again.PatientID = "CORRECTED"
        send(settings.dicom.port, same_again, results)  # same study and series: replaces
        assert results == [0, 0x0111, 0x0111, 0]
        record = node.index.get(str(first.SOPInstanceUID))
        assert record is not None and record.study_uid == first.StudyInstanceUID
        assert dcmread(record.path).PatientID == "CORRECTED" == record.patient_id
        assert len(list(node.spool.root.glob("*/*/*.dcm"))) == 1
        assert_consistent(node)


def test_spool_check_command_finds_orphans_mismatches_and_broken_files(tmp_path: Path) -> None:
    settings = node_settings(tmp_path)
    with run_node(settings) as node:
        stored = []
        for seed in range(3):
            ds = mr_dataset(seed=seed)
            send(settings.dicom.port, ds, [])
            stored.append(node.index.get(str(ds.SOPInstanceUID)))
        spool = node.spool.root
    env_config = tmp_path / "node.toml"
    env_config.write_text(f'[storage]\ndata_dir = "{settings.storage.data_dir}"\n')
    command = [sys.executable, "-m", "scp_node", "spool", "check", "--config", str(env_config)]
    clean = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    orphan = spool / "1.2.3" / "4.5.6" / "7.8.9.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(stored[0].path.read_bytes())
    with open(stored[1].path, "ab") as handle:
        handle.write(b"junk")  # size mismatch
    data = stored[2].path.read_bytes()
    at = data.rindex(b"\xe0\x7f\x10\x00OW")
    stored[2].path.write_bytes(data[:at] + b"\xe0\x7f\x10\x00ZZ" + data[at + 6 :])  # same size
    broken = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "orphans: 1.2.3/4.5.6/7.8.9.dcm" in broken.stdout
    assert f"mismatches: {stored[1].sop_instance_uid}: size" in broken.stdout
    assert f"unparseable: {stored[2].sop_instance_uid}: data set malformed" in broken.stdout
    assert "NOT CONSISTENT" in broken.stdout
