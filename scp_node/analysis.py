"""One study in, one :class:`StudyResult` out: select series, load it, run the model."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from scp_node.config import Settings
from scp_node.model.engine import LocalizerEngine
from scp_node.result import StudyResult
from scp_node.series import select_and_load

log = logging.getLogger(__name__)


def analyze_study(paths: list[Path], settings: Settings, engine: LocalizerEngine) -> StudyResult:
    """The LSTV screen of one study's instance files. A study without a usable series gives a
    not-applicable result with the reason; model failures are reported the same way, never
    raised. Every result names the engine's threshold origin (``calibration``)."""
    result = _analyze(paths, settings, engine)
    label = getattr(engine, "calibration_label", "")
    if label and not result.calibration:
        result = replace(result, calibration=label)
    return result


def _analyze(paths: list[Path], settings: Settings, engine: LocalizerEngine) -> StudyResult:
    selection = select_and_load(paths, settings.series)
    if selection.volume is None:
        return StudyResult(
            study_instance_uid=selection.study_instance_uid,
            applicable=False,
            reason=selection.reason,
            model=engine.identity,
            device=engine.device_name,
            warnings=tuple(selection.warnings),
        )
    try:
        return engine.analyze(selection.volume)
    except Exception as exc:  # noqa: BLE001 - one bad study must not stop the node
        log.exception("inference failed for study %s", selection.study_instance_uid)
        return StudyResult(
            study_instance_uid=selection.study_instance_uid,
            applicable=False,
            reason=f"inference failed: {type(exc).__name__}: {exc}",
            series_instance_uid=selection.volume.series_instance_uid,
            model=engine.identity,
            device=engine.device_name,
            warnings=tuple(selection.warnings),
        )
