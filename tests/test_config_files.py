"""The files in ``config/``: the generated default (exactly the built-in settings, every key) and
the examples an operator copies (each loads, and each says what it claims to)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from scp_node.config import Settings, load_settings
from scp_node.egress.dimse import tls_context
from scp_node.ingest.dimse import server_ssl_context
from tests.test_egress_tls import make_certificate
from tests.test_packaging import _config_doc_tool

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
EXAMPLES = ("orthanc-pacs.toml", "dicomweb-pacs.toml", "tls.toml")


@pytest.fixture(autouse=True)
def no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the file and the built-in defaults count here, never the caller's SCP_NODE_*."""
    for name in list(os.environ):
        if name.startswith("SCP_NODE_"):
            monkeypatch.delenv(name)


def test_default_toml_equals_the_built_in_settings() -> None:
    assert load_settings(CONFIG / "default.toml") == Settings()


def test_default_toml_names_every_key_and_is_generated() -> None:
    tool = _config_doc_tool()
    text = (CONFIG / "default.toml").read_text(encoding="utf-8")
    assert text == tool.render_toml(), (
        "config/default.toml is stale: run python tools/config_doc.py"
    )
    headers = re.findall(r"^(?:# )?\[([^\]]+)\]$", text, flags=re.M)
    for key in tool.all_keys():
        section = text[text.index(f"[{key.section}]\n") :]
        assert key.section in headers
        assert re.search(rf"^(# )?{re.escape(key.name)}( =|:)", section, flags=re.M), key.dotted
        assert key.env in section, key.env


def _destinations_are_consistent(settings: Settings) -> None:
    delivery = settings.delivery
    named = set(delivery.default_destinations) | set(delivery.reply_to_sender.values())
    assert named, "an example must deliver results somewhere"
    assert named <= set(delivery.destinations), f"undefined destinations {named}"
    for name, dest in delivery.destinations.items():
        if dest.kind == "stow":
            assert dest.url.startswith(("http://", "https://")), name
        else:
            assert dest.host and 0 < dest.port < 65536 and dest.ae_title, name


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_loads_and_its_destinations_exist(name: str) -> None:
    settings = load_settings(CONFIG / name)
    _destinations_are_consistent(settings)
    listeners = {settings.dicom.bind_host, settings.http.host}
    assert "0.0.0.0" in listeners, "an example is for a node that other hosts reach"


def test_container_base_file_sits_under_the_operators_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/container.toml is the image's SCP_NODE_BASE_CONFIG: its keys hold where the
    operator's file is silent and yield where it speaks."""
    monkeypatch.setenv("SCP_NODE_BASE_CONFIG", str(CONFIG / "container.toml"))
    image_only = load_settings()
    assert str(image_only.storage.data_dir) == "/data"
    assert image_only.dicom.bind_host == image_only.http.host == "0.0.0.0"
    mine = tmp_path / "node.toml"
    mine.write_text('[http]\nhost = "127.0.0.1"\n')
    layered = load_settings(mine)
    assert layered.http.host == "127.0.0.1" and str(layered.storage.data_dir) == "/data"


def test_orthanc_example_replies_to_the_sender_by_c_store() -> None:
    settings = load_settings(CONFIG / "orthanc-pacs.toml")
    (sender,) = settings.dicom.allowed_calling_aes
    reply = settings.delivery.destinations[settings.delivery.reply_to_sender[sender]]
    assert reply.kind == "dimse" and reply.ae_title == sender
    assert not settings.delivery.default_destinations, "results go to the sender only"


def test_dicomweb_example_sends_by_stow_with_a_token_the_environment_can_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(CONFIG / "dicomweb-pacs.toml")
    (dest,) = (settings.delivery.destinations[n] for n in settings.delivery.default_destinations)
    assert dest.kind == "stow" and dest.token is not None
    assert settings.http.auth == "token" and settings.http.token is not None
    monkeypatch.setenv("SCP_NODE_DELIVERY__DESTINATIONS__PACS__TOKEN", "from-the-environment")
    monkeypatch.setenv("SCP_NODE_HTTP__TOKEN", "node-secret")
    settings = load_settings(CONFIG / "dicomweb-pacs.toml")
    pacs = settings.delivery.destinations["pacs"]
    assert pacs.token is not None and pacs.token.get_secret_value() == "from-the-environment"
    assert pacs.url == "https://pacs.example.org/dicom-web", "the file's other keys stay"
    assert settings.http.token is not None
    assert settings.http.token.get_secret_value() == "node-secret"


def test_tls_example_shakes_hands_both_ways(tmp_path: Path) -> None:
    """The example's files swapped for a certificate made here (its own CA): the listener's
    context (client certificate required) and the destination's context (server verified, own
    certificate presented) complete a TLS handshake with each other on 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = make_certificate(tmp_path)
    text = (CONFIG / "tls.toml").read_text(encoding="utf-8")
    for placeholder, real in (("node.key", key), ("node.crt", cert), ("ca.crt", cert)):
        text = text.replace(f"/etc/scp-node/tls/{placeholder}", str(real))
    assert "/etc/scp-node" not in text
    (tmp_path / "tls.toml").write_text(text, encoding="utf-8")
    settings = load_settings(tmp_path / "tls.toml")
    dest = settings.delivery.destinations[settings.delivery.reply_to_sender["PACS"]]
    assert settings.dicom.tls.enabled and dest.tls.enabled
    server = server_ssl_context(settings.dicom)
    assert server is not None and server.verify_mode == ssl.CERT_REQUIRED
    client = tls_context(dest)

    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)

        def accept() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                seen["client_cert"] = tls.getpeercert()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        raw = socket.create_connection(listener.getsockname(), timeout=20)
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            seen["server_cert"] = tls.getpeercert()
        thread.join(20)
    assert seen["server_cert"] and seen["client_cert"], seen
