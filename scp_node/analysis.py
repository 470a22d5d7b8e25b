"""One study in, one :class:`StudyResult` out: select the series, run the model on it.

The series is chosen from headers alone; the model decodes only the slices it looks at (the
mid-sagittal search window and the context slices), and they are let go when the study is done.
A slice that turns out undecodable is dropped with a warning and the selection is made again
without it (the result is then what loading every slice first would have given, as long as the
undecodable slices are among those the model looked at).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from scp_node.config import Settings
from scp_node.model.engine import LocalizerEngine
from scp_node.result import StudyResult
from scp_node.series import SelectionResult, select_series
from scp_node.slices import SliceDecodeError, SliceStack

log = logging.getLogger(__name__)


@dataclass
class PreparedStudy:
    """A study's selection made ahead of completion (:func:`prepare_study`; the engine holds the
    model inputs made from it); valid for exactly the instance files it was made from."""

    paths: frozenset[Path]
    selection: SelectionResult


def prepare_study(
    paths: list[Path], settings: Settings, engine: LocalizerEngine
) -> PreparedStudy | None:
    """Select the series and decode, canonicalise and encode the slices the model will look at
    first, ahead of the study's completion; None when there is nothing to prepare (no usable
    series, or a slice that does not decode: the analysis itself deals with those)."""
    selection = select_series(paths, settings.series, settings.model.decode_threads)
    if selection.volume is None:
        return None
    try:
        engine.prepare(selection.volume)
    except Exception:  # noqa: BLE001 - the analysis at completion reports what is wrong
        return None
    finally:
        if isinstance(selection.volume.volume, SliceStack):
            selection.volume.volume.release()
    return PreparedStudy(frozenset(paths), selection)


def analyze_study(
    paths: list[Path],
    settings: Settings,
    engine: LocalizerEngine,
    prepared: PreparedStudy | None = None,
) -> StudyResult:
    """The LSTV screen of one study's instance files. A study without a usable series gives a
    not-applicable result with the reason; model failures are reported the same way, never
    raised. Every result names the engine's threshold origin (``calibration``). ``prepared``
    is used when it was made from the same files (else ignored)."""
    if prepared is not None and prepared.paths != frozenset(paths):
        prepared = None
    result = _analyze(paths, settings, engine, prepared)
    label = getattr(engine, "calibration_label", "")
    if label and not result.calibration:
        result = replace(result, calibration=label)
    return result


def _analyze(
    paths: list[Path],
    settings: Settings,
    engine: LocalizerEngine,
    prepared: PreparedStudy | None,
) -> StudyResult:
    if prepared is not None:
        selection = prepared.selection
    else:
        selection = select_series(paths, settings.series, settings.model.decode_threads)
    while selection.volume is not None:
        volume = selection.volume
        try:
            return engine.analyze(volume)  # with the engine's prepared inputs of this volume
        except SliceDecodeError as exc:
            log.info("study %s: %s", selection.study_instance_uid, exc.message)
            selection = selection.without_slice(exc.index, exc.message)
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop the node
            log.exception("inference failed for study %s", selection.study_instance_uid)
            return StudyResult(
                study_instance_uid=selection.study_instance_uid,
                applicable=False,
                reason=f"inference failed: {type(exc).__name__}: {exc}",
                series_instance_uid=volume.series_instance_uid,
                model=engine.identity,
                device=engine.device_name,
                warnings=tuple(selection.warnings),
            )
        finally:
            if isinstance(volume.volume, SliceStack):
                volume.volume.release()  # the decoded slices are not needed any more
    return _not_applicable(selection, engine)


def _not_applicable(selection: SelectionResult, engine: LocalizerEngine) -> StudyResult:
    return StudyResult(
        study_instance_uid=selection.study_instance_uid,
        applicable=False,
        reason=selection.reason,
        model=engine.identity,
        device=engine.device_name,
        warnings=tuple(selection.warnings),
    )
