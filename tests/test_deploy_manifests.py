"""The cluster deployment files (deploy/cluster/) are valid and say what the node understands.

- compose.yaml against the Compose Specification schema (check-jsonschema's vendored copy);
- every Kubernetes manifest against the Kubernetes OpenAPI schemas, strictly (kubernetes-validate,
  no unknown fields);
- every ``SCP_NODE_*`` variable they set is a setting the node accepts, every command is a real
  ``scp-node`` sub-command, and the workers ask for a GPU.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scp_node.cli import build_parser
from scp_node.config import load_settings

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "cluster"
COMPOSE = DEPLOY / "compose.yaml"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
K8S_VERSION = "1.30.0"


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _settings_accept(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_settings`` takes these variables (values with placeholders filled in)."""
    for name in [n for n in __import__("os").environ if n.startswith("SCP_NODE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, re.sub(r"\$\{[^}]*\}|\$\([^)]*\)", "x", value))
    load_settings()


def _check_command(command: list[str]) -> None:
    assert command[0] == "scp-node"
    build_parser().parse_args(command[1:])


def test_compose_file_matches_the_compose_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_services_are_real_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"rabbitmq", "ingest", "worker"} <= set(services)
    assert services["ingest"]["command"][-2:] == ["--role", "ingest"]
    assert services["worker"]["command"] == ["scp-node", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    [gpu] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("ingest", "worker"):
        _check_command(services[name]["command"])
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        assert "SCP_NODE_CLUSTER__BROKER_URL" in env
        _settings_accept(env, monkeypatch)


def test_kubernetes_manifests_validate_strictly() -> None:
    docs = _k8s_docs()
    assert {d["kind"] for d in docs} >= {"Service", "StatefulSet", "Deployment"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_containers_run_real_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    by_name = {d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] != "Service"}
    worker = by_name["scp-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    for name in ("scp-ingest", "scp-worker"):
        [container] = by_name[name]["spec"]["template"]["spec"]["containers"]
        _check_command(container["command"])
        env = {
            e["name"]: e.get("value", "from-secret")
            for e in container["env"]
            if e["name"].startswith("SCP_NODE_")
        }
        _settings_accept(env, monkeypatch)
    ingest = by_name["scp-ingest"]["spec"]["template"]["spec"]["containers"][0]
    assert ingest["command"][-2:] == ["--role", "ingest"]
