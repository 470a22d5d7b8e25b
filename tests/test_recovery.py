"""After an unclean stop the spool is re-indexed; a clean stop skips the scan."""

from __future__ import annotations

from pydicom import dcmread

from scp_node.node import Node
from scp_node.store import recovery
from tests.dicom_factory import write_mr
from tests.test_ingest_faults import store_file


def test_spool_files_missing_from_the_index_are_recovered(tmp_path, settings):
    node = Node(settings)
    node.start()
    sent = write_mr(tmp_path / "a.dcm", seed=1)
    assert store_file(settings.dicom.port, sent) == 0
    sop = str(dcmread(sent).SOPInstanceUID)
    node.stop()
    # simulate a power loss that dropped the last index commit but kept the fsynced file
    node.db.connection().execute("DELETE FROM instances WHERE sop_instance_uid = ?", (sop,))
    recovery.mark_running(settings.storage.data_dir)

    again = Node(settings)
    again.start()
    try:
        record = again.index.get(sop)
        assert record is not None and record.source == "recovered"
        assert record.calling_ae == "PACS"
        assert record.study_uid == str(dcmread(sent).StudyInstanceUID)
    finally:
        again.stop()
    assert not recovery.was_unclean(settings.storage.data_dir)


def test_clean_stop_leaves_no_marker(settings):
    node = Node(settings)
    node.start()
    assert recovery.was_unclean(settings.storage.data_dir)
    node.stop()
    assert not recovery.was_unclean(settings.storage.data_dir)
