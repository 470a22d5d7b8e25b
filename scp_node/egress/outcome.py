"""The outcome of one attempt to deliver one file (shared by the DIMSE and STOW-RS senders)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """``ok`` when the destination acknowledged the instance; ``status`` is the DIMSE status (or the
    STOW-RS Failure Reason / HTTP status) where the destination gave one."""

    ok: bool
    error: str = ""
    status: int | None = None

    @classmethod
    def failed(cls, error: str, status: int | None = None) -> Outcome:
        return cls(False, error, status)


OK = Outcome(True)
