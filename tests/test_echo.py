"""``scp-node echo --to NAME`` tests a destination exactly as delivery reaches it.

A DIMSE destination behind DICOM TLS (a real DCMTK ``storescp +tls``, ``-d`` shows the calling AE
title); a STOW-RS destination probed with an authenticated QIDO-RS request (a real node's DICOMweb).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from scp_node.cli import main
from tests.conftest import dcmtk, dcmtk_env, free_port, node_settings, run_node
from tests.ports import wait_listening
from tests.test_egress_tls import make_certificate


def write_config(path: Path, destinations: str) -> Path:
    path.write_text(f'[dicom]\nae_title = "LSTV_NODE"\n\n{destinations}')
    return path


def test_echo_to_a_tls_destination_uses_its_calling_ae_and_tls(tmp_path, capsys):
    key, cert = make_certificate(tmp_path)
    port, log = free_port(), tmp_path / "storescp.log"
    config = write_config(
        tmp_path / "node.toml",
        f"""[delivery.destinations.pacs]
kind = "dimse"
ae_title = "PACS"
host = "127.0.0.1"
port = {port}
calling_ae = "RESULTS_AE"
timeout_s = 10
tls = {{ enabled = true, ca_file = "{cert}", cert_file = "{cert}", key_file = "{key}" }}

[delivery.destinations.plain]
kind = "dimse"
ae_title = "PACS"
host = "127.0.0.1"
port = {port}
timeout_s = 5
""",
    )
    with log.open("w") as out:
        receiver = subprocess.Popen(
            [dcmtk("storescp"), "-d", "-aet", "PACS", "+tls", str(key), str(cert),
             "+cf", str(cert), "--ignore", str(port)],
            env=dcmtk_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(port)
        assert main(["echo", "--config", str(config), "--to", "pacs"]) == 0
        said = capsys.readouterr().out
        assert "C-ECHO RESULTS_AE -> PACS@127.0.0.1" in said, said
        assert f"over TLS (CA {cert}, client certificate {cert})" in said, said
        assert "status 0x0000 (Success)" in said, said

        # the same peer without the destination's TLS settings is not reachable: echo says so
        assert main(["echo", "--config", str(config), "--to", "plain"]) == 1
        assert "(plain TCP)" in capsys.readouterr().out
    finally:
        receiver.terminate()
        receiver.wait(10)
    assert "Calling Application Name:    RESULTS_AE" in log.read_text()


def test_echo_to_a_stow_destination_is_an_authenticated_qido_probe(tmp_path, capsys):
    settings = node_settings(tmp_path, http={"auth": "token", "token": "right-token"})
    url = f"http://127.0.0.1:{settings.http.port}{settings.http.root}"

    def config_with(token: str) -> Path:
        return write_config(
            tmp_path / f"{token}.toml",
            f'[delivery.destinations.web]\nkind = "stow"\nurl = "{url}"\ntoken = "{token}"\n',
        )

    with run_node(settings):
        assert main(["echo", "--config", str(config_with("right-token")), "--to", "web"]) == 0
        said = capsys.readouterr().out
        assert f"DICOMweb probe GET {url}/studies?limit=1 (bearer token) [web]" in said, said
        assert "HTTP 204" in said and "token accepted" in said  # no studies yet
        assert "PACS@127.0.0.1:4242" not in said  # not the default DIMSE address

        assert main(["echo", "--config", str(config_with("wrong-token")), "--to", "web"]) == 1
        said = capsys.readouterr().out
        assert "HTTP 401 (the token was refused or is missing)" in said, said
        assert "wrong-token" not in said  # the secret is never printed
