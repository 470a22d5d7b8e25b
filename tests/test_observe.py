"""Structured logs and the status command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from scp_node.cli import main
from scp_node.observe import setup_logging
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.jobs import JobStore


def test_json_log_lines_are_one_object_each(capsys):
    setup_logging("INFO", "json")
    try:
        logging.getLogger("scp_node.test").info("stored sop=%s", "1.2.3")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("scp_node.test").exception("failed")
        lines = [line for line in capsys.readouterr().err.splitlines() if line]
        entries = [json.loads(line) for line in lines]
        assert entries[0]["message"] == "stored sop=1.2.3"
        assert entries[0]["level"] == "INFO" and entries[0]["logger"] == "scp_node.test"
        assert "ValueError: boom" in entries[1]["exception"]
    finally:
        logging.getLogger().handlers.clear()


def test_status_lists_studies_with_their_state(tmp_path: Path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("SCP_NODE_STORAGE__DATA_DIR", str(data))
    assert main(["status"]) == 1  # no index yet: says so
    assert "no index" in capsys.readouterr().out
    db = Database(data / "index.sqlite3")
    InstanceIndex(db).add(
        InstanceRecord(
            sop_instance_uid="1.2.3.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            study_uid="1.2.3", series_uid="1.2.3.9", transfer_syntax="1.2.840.10008.1.2.1",
            path=tmp_path / "x.dcm", size=10,
        )
    )  # fmt: skip
    JobStore(db).sync_from_studies()
    assert main(["status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["study_uid"], r["state"], r["instances"]) for r in rows] == [
        ("1.2.3", "received", 1)
    ]
    assert main(["status"]) == 0
    assert "1.2.3" in capsys.readouterr().out
