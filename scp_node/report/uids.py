"""Deterministic UIDs for the node's outputs (PS3.5 §9, ``generate_uid(entropy_srcs=...)``).

The same study, the same source instances and the same model (name, version, weights) always give
the same UIDs, so a re-run *replaces* the earlier SR in the PACS instead of adding a second one:

- series UID  = f(kind, StudyInstanceUID, model name/version/weights sha256)
- SOP UID     = f(kind, StudyInstanceUID, sorted source SOP Instance UIDs, model ...)
- tracking UID of a level = f("tracking", SR SOP Instance UID, level)

pydicom hashes the *concatenation* of ``entropy_srcs``, so the parts are joined here with a
backslash first (the value delimiter, which no UID, name or hex digest contains): otherwise
sources {"1.2.31", "2.4"} and {"1.2.3", "12.4"} would hash the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import generate_uid

from scp_node.result import ModelIdentity


def _uid(*parts: str) -> str:
    """A UID under pydicom's root from a SHA-512 of ``parts`` (one UID per sequence of parts)."""
    return str(generate_uid(entropy_srcs=["\\".join(parts)]))


def _model_terms(model: ModelIdentity | None) -> list[str]:
    if model is None:
        return ["no-model"]
    return [model.name, model.version, model.weights_sha256]


def series_uid(kind: str, study_uid: str, model: ModelIdentity | None) -> str:
    """The output series of ``kind`` ("sr" or "sc") for this study and model."""
    return _uid(f"{kind}-series", study_uid, *_model_terms(model))


def instance_uid(
    kind: str, study_uid: str, source_sop_uids: Iterable[str], model: ModelIdentity | None
) -> str:
    """The output instance of ``kind`` for this study, these sources (order-free) and this model."""
    sources = sorted(set(source_sop_uids))
    return _uid(f"{kind}-instance", study_uid, *sources, *_model_terms(model))


def tracking_uid(sr_sop_uid: str, label: str) -> str:
    """Tracking Unique Identifier of one measurement group (TID 4108), stable with the SR."""
    return _uid("tracking", sr_sop_uid, label)


def device_uid(device_name: str, version: str) -> str:
    """Device Observer UID (TID 1004) of this node."""
    return _uid("device-observer", device_name, version)
