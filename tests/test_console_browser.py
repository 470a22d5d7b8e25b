"""The operator console in a real browser: headless Debian chromium driven by puppeteer-core
(``tests/console/walk_console.js``; the same set-up as the OHIF test: ``scripts/install-ohif.sh``).

A phantom study goes through the node for real: DCMTK ``storescu`` sends it, the pipeline analyses
it and writes the SR and the Secondary Capture, and their delivery dead-letters because the
destination is down. Then a DCMTK ``storescp`` comes up on that port, and the browser signs in
(a wrong password first), finds the study, opens its page (overlay image and verdict), retries
the dead letters from the outbox page and sees them delivered, and opens the charts (server-drawn
SVG). Set ``CONSOLE_SCREENSHOTS`` to a folder to keep the screenshots (``docs/img/console-*.png``
come from here). Bounded: the walk has 45 s; the whole test took 17-27 s on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from scp_node.node import Node
from scp_node.phantom_dicom import write_phantom
from tests.conftest import dcmtk, dcmtk_env, dimse_destination, free_port, node_settings, storescu

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent
SCRIPT = HERE / "console" / "walk_console.js"
MODULES = HERE / "ohif" / "node_modules"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
WEIGHTS = HERE.parent / "scp_node" / "data" / "reference_localizer.pt"
PASSWORD = "console-browser-test-password"
WALK_TIMEOUT_S = 45


def _require_tools() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (MODULES / "puppeteer-core").exists():
        missing.append("tests/ohif/node_modules/puppeteer-core")
    if missing:
        pytest.skip("browser set-up missing: " + ", ".join(missing) + " (scripts/install-ohif.sh)")
    if not WEIGHTS.exists():
        pytest.skip(f"model weights not trained yet: {WEIGHTS} is absent")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_operator_walks_the_console(tmp_path: Path) -> None:
    _require_tools()
    pacs_port = free_port()
    settings = node_settings(
        tmp_path,
        pipeline={"enabled": True, "quiet_seconds": 1.0, "poll_interval_s": 0.2},
        delivery={
            "destinations": {"pacs": {**dimse_destination("PACS", pacs_port), "timeout_s": 5}},
            "default_destinations": ["pacs"],
            "max_attempts": 1,
            "poll_interval_s": 0.2,
        },
        console={"password": PASSWORD, "refresh_s": 1},
    )
    normal = write_phantom(tmp_path / "normal", "normal", seed=31, slices=12, size=256)
    files = write_phantom(tmp_path / "study", "sacralization", seed=33, slices=12, size=256)
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    others = [str(dcmread(normal[0], stop_before_pixels=True).StudyInstanceUID)]
    patient = str(dcmread(files[0], stop_before_pixels=True).PatientName)
    shots = Path(os.environ.get("CONSOLE_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    node = Node(settings)
    node.start()
    pacs: subprocess.Popen[bytes] | None = None
    try:
        for study in (normal, files):  # two studies: the charts get more than one value
            sent = storescu(settings.dicom.port, study)
            assert sent.returncode == 0, sent.stderr
        assert node.pipeline is not None
        jobs = node.pipeline.jobs

        def failed() -> bool:
            found = [jobs.get(uid) for uid in (study_uid, *others)]
            return all(job is not None and job.state == "delivery_failed" for job in found)

        _wait(failed, 90, "the results to dead-letter (destination down)")
        pacs = subprocess.Popen(
            [dcmtk("storescp"), "-aet", "PACS", "-od", str(inbox), str(pacs_port)],
            env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.monotonic()
        walk = subprocess.run(
            ["node", str(SCRIPT), f"http://127.0.0.1:{node.http.port}", PASSWORD, study_uid,
             str(shots)],
            capture_output=True, text=True, timeout=WALK_TIMEOUT_S + 15,
            env={**os.environ, "NODE_PATH": str(MODULES),
                 "CONSOLE_TIMEOUT_MS": str(WALK_TIMEOUT_S * 1000)},
        )  # fmt: skip
        walked_s = time.monotonic() - started
        assert walk.stdout.strip(), f"no result (rc {walk.returncode}): {walk.stderr[-2000:]}"
        seen = json.loads(walk.stdout)
        assert walk.returncode == 0, seen["errors"]
        assert walked_s < WALK_TIMEOUT_S

        assert seen["signInUrl"] == "/console/sign-in"
        assert seen["wrongPassword"] == "Wrong password."
        assert seen["afterSignIn"] == "/console/studies"
        assert "delivery failed" in seen["listRow"] and "12" in seen["listRow"]
        assert seen["liveStatus"].startswith("Up to date at")
        assert seen["overlay"][0] >= 256 and seen["overlay"][1] >= 256
        result = jobs.get(study_uid).result()  # type: ignore[union-attr]
        expected = "LSTV suspected" if result["lstv_suspected"] else "No LSTV suspected"
        if not result["assessable"]:
            expected = "Not assessable"
        assert seen["verdict"].startswith(expected)
        assert f"{result['lstv_score']:.3f}" in seen["score"]
        assert f"vs {result['lstv_threshold']:.3f}" in seen["score"]
        assert seen["srTree"] > 10
        assert seen["deadOnStudyPage"] == 2  # the SR and the SC
        assert seen["deadBefore"] == 4 and "4 deliveries reset" in seen["retryNote"]
        assert seen["deadAfter"] == 0 and seen["deliveredAfter"] == 4
        assert [c["marks"] > 0 for c in seen["charts"]] == [True] * 4, seen["charts"]
        assert "Decoders" in " ".join(seen["systemHeadings"])
        assert not [e for e in seen["errors"] if "pageerror" in e], seen["errors"]

        received = [dcmread(p, stop_before_pixels=True) for p in inbox.iterdir()]
        assert sorted(str(d.Modality) for d in received) == ["OT", "OT", "SR", "SR"]
        _wait(lambda: jobs.get(study_uid).state == "delivered", 10, "the study delivered")  # type: ignore[union-attr]
        for png in ("console-studies.png", "console-study.png", "console-outbox-dead.png"):
            assert (shots / png).stat().st_size > 10_000
        assert patient  # the phantom has a patient name; the console never showed it
        assert patient not in seen["listRow"]
    finally:
        if pacs is not None:
            pacs.terminate()
            pacs.wait(10)
        node.stop()
