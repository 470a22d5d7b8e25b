"""Deterministic UIDs for the node's outputs (PS3.5 §9, ``generate_uid(entropy_srcs=...)``).

The same study, the same source instances and the same model (name, version, weights) always give
the same UIDs, so a re-run *replaces* the earlier SR in the PACS instead of adding a second one:

- series UID  = f(kind, StudyInstanceUID, model name/version/weights sha256)
- SOP UID     = f(kind, StudyInstanceUID, sorted source SOP Instance UIDs, model ...)
- tracking UID of a level = f("tracking", SR SOP Instance UID, level)
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import generate_uid

from scp_node.result import ModelIdentity


def _model_terms(model: ModelIdentity | None) -> list[str]:
    if model is None:
        return ["no-model"]
    return [model.name, model.version, model.weights_sha256]


def series_uid(kind: str, study_uid: str, model: ModelIdentity | None) -> str:
    """The output series of ``kind`` ("sr" or "sc") for this study and model."""
    return str(generate_uid(entropy_srcs=[f"{kind}-series", study_uid, *_model_terms(model)]))


def instance_uid(
    kind: str, study_uid: str, source_sop_uids: Iterable[str], model: ModelIdentity | None
) -> str:
    """The output instance of ``kind`` for this study, these sources (order-free) and this model."""
    sources = sorted(set(source_sop_uids))
    return str(
        generate_uid(entropy_srcs=[f"{kind}-instance", study_uid, *sources, *_model_terms(model)])
    )


def tracking_uid(sr_sop_uid: str, label: str) -> str:
    """Tracking Unique Identifier of one measurement group (TID 4108), stable with the SR."""
    return str(generate_uid(entropy_srcs=["tracking", sr_sop_uid, label]))


def device_uid(device_name: str, version: str) -> str:
    """Device Observer UID (TID 1004) of this node."""
    return str(generate_uid(entropy_srcs=["device-observer", device_name, version]))
