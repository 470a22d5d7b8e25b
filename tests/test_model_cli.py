"""``scp-node model train`` never replaces the packaged reference weights unless told to."""

from __future__ import annotations

import pytest

from scp_node.cli import main
from scp_node.commands.model import DEFAULT_TRAIN_OUT
from scp_node.model.weights import reference_path


def test_train_refuses_the_packaged_weights_as_out(capsys):
    reference = reference_path()
    before = reference.stat().st_mtime_ns if reference.exists() else None
    assert main(["model", "train", "--out", str(reference), "--steps", "1"]) == 2
    assert "--overwrite-reference" in capsys.readouterr().out
    assert (reference.stat().st_mtime_ns if reference.exists() else None) == before


def test_train_default_is_a_new_file_and_never_clobbers_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_TRAIN_OUT).write_bytes(b"someone's checkpoint")
    assert main(["model", "train", "--steps", "1"]) == 2
    assert "--out FILE" in capsys.readouterr().out
    assert (tmp_path / DEFAULT_TRAIN_OUT).read_bytes() == b"someone's checkpoint"


def test_out_and_overwrite_reference_exclude_each_other():
    with pytest.raises(SystemExit) as exc:
        main(["model", "train", "--out", "x.pt", "--overwrite-reference"])
    assert exc.value.code == 2
