"""Configuration mistakes are one line (where, which key, the fix) and exit status 2; the layers of
configuration (image base file < operator's file < environment) are visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scp_node.cli import main
from scp_node.config import describe_sources, load_settings, overridden_file_keys
from tests.conftest import free_port


@pytest.fixture(autouse=True)
def no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SCP_NODE_"):
            monkeypatch.delenv(name)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_unknown_key_names_the_file_the_key_and_the_fix(tmp_path, capsys):
    config = tmp_path / "node.toml"
    config.write_text('[dicom]\nae_title = "LSTV_NODE"\nprot = 104\n')
    assert main(["status", "--config", str(config)]) == 2
    line = one_line_error(capsys)
    assert f"config file {config}" in line and "unknown key [dicom] prot" in line, line
    assert "correct its spelling" in line


def test_missing_file_and_broken_toml(tmp_path, capsys):
    assert main(["outbox", "list", "--config", str(tmp_path / "absent.toml")]) == 2
    line = one_line_error(capsys)
    assert "config file not found" in line and "absent.toml" in line and "--config" in line

    broken = tmp_path / "broken.toml"
    broken.write_text("[dicom\nport = 1\n")
    assert main(["echo", "--config", str(broken)]) == 2
    assert "is not valid TOML" in one_line_error(capsys)


def test_a_bad_value_from_the_environment_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("SCP_NODE_DICOM__PORT", "eleven")
    assert main(["status"]) == 2
    line = one_line_error(capsys)
    assert "environment variable SCP_NODE_DICOM__PORT" in line and "[dicom] port" in line


def test_a_secret_value_is_never_printed(tmp_path, capsys):
    config = tmp_path / "node.toml"
    config.write_text('[http]\ntoken = ["not-a-string-secret"]\n')
    assert main(["status", "--config", str(config)]) == 2
    line = one_line_error(capsys)
    assert "[http] token" in line and "not-a-string-secret" not in line


def test_base_file_then_operator_file_then_environment(tmp_path, monkeypatch):
    base, mine = tmp_path / "container.toml", tmp_path / "node.toml"
    base.write_text('[storage]\ndata_dir = "/data"\n[dicom]\nbind_host = "0.0.0.0"\nport = 104\n')
    mine.write_text('[storage]\ndata_dir = "/srv/node"\n')
    monkeypatch.setenv("SCP_NODE_BASE_CONFIG", str(base))
    monkeypatch.setenv("SCP_NODE_DICOM__PORT", "2104")
    settings = load_settings(mine)
    assert settings.storage.data_dir == Path("/srv/node")  # the operator's file beats the image's
    assert settings.dicom.bind_host == "0.0.0.0"  # the image's default where the file is silent
    assert settings.dicom.port == 2104  # the environment beats both
    sources = describe_sources(mine)
    assert sources == (
        f"built-in defaults < {base} (SCP_NODE_BASE_CONFIG) < {mine} (--config) "
        "< environment SCP_NODE_DICOM__PORT"
    )
    assert overridden_file_keys(mine) == [f"SCP_NODE_DICOM__PORT overrides [dicom] port of {base}"]


def test_every_command_logs_as_the_log_section_says(tmp_path):
    """``[log] format = "json"`` holds for ``scp-node echo`` too, not only for ``serve``."""
    config = tmp_path / "node.toml"
    config.write_text('[log]\nformat = "json"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "scp_node", "echo", "--config", str(config),
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any("no association" in r["message"] for r in records), records
    assert proc.stdout.startswith("C-ECHO ")


def test_destination_names_a_shell_cannot_export_are_found():
    from scp_node.config import names_the_environment_cannot_reach

    settings = load_settings(
        delivery={"destinations": {"pacs_b": {}, "PACS-B": {}, "Main": {}, "mr1": {}}}
    )
    assert names_the_environment_cannot_reach(settings) == ["PACS-B", "Main"]


def test_serve_logs_where_its_settings_come_from(tmp_path, monkeypatch):
    """The layers (image base file < operator's file < environment) in the start log of a real
    ``scp-node serve`` process, and the environment variable that beats a file's key."""
    from tests.node_process import NodeProcess

    base, mine, port = tmp_path / "container.toml", tmp_path / "node.toml", free_port()
    base.write_text(f'[dicom]\nport = {free_port()}\n[storage]\ndata_dir = "{tmp_path}/image"\n')
    mine.write_text(
        f'[storage]\ndata_dir = "{tmp_path}/mine"\n[http]\nenabled = false\n'
        "[pipeline]\nenabled = false\n"
    )
    monkeypatch.setenv("SCP_NODE_BASE_CONFIG", str(base))
    monkeypatch.setenv("SCP_NODE_DICOM__PORT", str(port))
    node = NodeProcess(mine, port).start()  # listening on the environment's port
    try:
        assert (tmp_path / "mine" / "index.sqlite3").exists()  # the operator's file won
    finally:
        node.stop()
    log = node.log_path.read_text()
    assert (
        f"configuration: built-in defaults < {base} (SCP_NODE_BASE_CONFIG) < {mine} "
        "(SCP_NODE_CONFIG) < environment SCP_NODE_DICOM__PORT"
    ) in log, log
    assert f"configuration: SCP_NODE_DICOM__PORT overrides [dicom] port of {base}" in log


def test_environment_merge_rule_as_documented(tmp_path, monkeypatch):
    """configuration.md: a JSON table from the environment is merged with the file's table, a
    list replaces the file's list, and a lower-case exportable name reaches a file's destination."""
    config = tmp_path / "node.toml"
    config.write_text(
        '[dicom]\nallowed_calling_aes = ["PACS", "MR1"]\n'
        '[delivery.destinations.pacs_b]\nkind = "stow"\nurl = "https://pacs-b/dicom-web"\n'
    )
    monkeypatch.setenv("SCP_NODE_DELIVERY__DESTINATIONS", '{"extra": {"port": 104}}')
    monkeypatch.setenv("SCP_NODE_DICOM__ALLOWED_CALLING_AES", '["CT1"]')
    monkeypatch.setenv("SCP_NODE_DELIVERY__DESTINATIONS__PACS_B__TOKEN", "from-env")
    settings = load_settings(config)
    destinations = settings.delivery.destinations
    assert set(destinations) == {"pacs_b", "extra"}  # merged, not replaced
    assert destinations["pacs_b"].url == "https://pacs-b/dicom-web"
    token = destinations["pacs_b"].token
    assert token is not None and token.get_secret_value() == "from-env"
    assert settings.dicom.allowed_calling_aes == ["CT1"]  # a list is replaced
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert "**A table is merged**" in text and "**A list replaces**" in text
