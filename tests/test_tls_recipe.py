"""docs/deployment.md's OpenSSL recipe, run as written, gives certificates that DCMTK and the node
accept both ways; a certificate that does not name the host is reported as exactly that."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scp_node.cli import main
from tests.conftest import dcmtk, dcmtk_env, free_port, node_settings, run_node
from tests.ports import wait_listening

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_HOST = "NAME=node.example.org SAN=DNS:node.example.org"


def recipe() -> tuple[str, str]:
    """(the CA part, the per-host part) of the recipe's shell block."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    block = text.split("<!-- tls-recipe -->")[1].split("<!-- /tls-recipe -->")[0]
    script = block.strip().removeprefix("```sh").removesuffix("```")
    ca_part, host_part = script.split(EXAMPLE_HOST)
    return ca_part, host_part


def make_certificates(folder: Path, hosts: dict[str, str]) -> None:
    ca_part, host_part = recipe()
    script = ca_part + "".join(f"NAME={n} SAN={san}\n{host_part}" for n, san in hosts.items())
    subprocess.run(
        ["bash", "-euc", script], cwd=folder, check=True, capture_output=True, timeout=120
    )


def storescp_tls(folder: Path, name: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "+tls", f"{name}.key", f"{name}.crt",
         "+cf", "ca.crt", "--ignore", str(port)],
        cwd=folder, env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_recipe_certificates_work_both_ways_and_a_wrong_name_is_named(tmp_path, capsys):
    make_certificates(
        tmp_path, {"node": "IP:127.0.0.1", "pacs": "IP:127.0.0.1", "other": "DNS:other.example"}
    )
    ca, node_cert, node_key = (str(tmp_path / f) for f in ("ca.crt", "node.crt", "node.key"))
    tls = {"enabled": True, "ca_file": ca, "cert_file": node_cert, "key_file": node_key}
    good_port, wrong_port = free_port(), free_port()
    destinations = {
        name: {"kind": "dimse", "ae_title": "PACS", "host": "127.0.0.1", "port": port,
               "timeout_s": 10, "tls": tls}
        for name, port in (("pacs", good_port), ("wrong", wrong_port))
    }  # fmt: skip
    settings = node_settings(tmp_path, dicom={"tls": tls})
    config = tmp_path / "node.toml"
    lines = []
    for name, dest in destinations.items():
        lines.append(f"[delivery.destinations.{name}]")
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}"
                  for k, v in dest.items() if k != "tls"]  # fmt: skip
        lines.append(f"[delivery.destinations.{name}.tls]")
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = true" for k, v in tls.items()]
    config.write_text("\n".join(lines) + "\n")

    with run_node(settings):  # the node's listener with the recipe's certificate
        echo = subprocess.run(
            [dcmtk("echoscu"), "+tls", "pacs.key", "pacs.crt", "+cf", "ca.crt",
             "-aet", "PACS", "-aec", "LSTV_NODE", "127.0.0.1", str(settings.dicom.port)],
            cwd=tmp_path, env=dcmtk_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert echo.returncode == 0, echo.stdout + echo.stderr

    good, wrong = (
        storescp_tls(tmp_path, "pacs", good_port),
        storescp_tls(tmp_path, "other", wrong_port),
    )
    try:
        wait_listening(good_port, wrong_port)
        assert main(["echo", "--config", str(config), "--to", "pacs"]) == 0
        assert "status 0x0000 (Success)" in capsys.readouterr().out
        assert main(["echo", "--config", str(config), "--to", "wrong"]) == 1
        said = capsys.readouterr().out
        assert "TLS certificate verification failed" in said and "subjectAltName" in said, said
    finally:
        for process in (good, wrong):
            process.terminate()
            process.wait(10)
