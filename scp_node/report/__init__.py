"""Result → DICOM: the TID 1500 SR (:mod:`.sr`) and the optional Secondary Capture (:mod:`.sc`)."""

from scp_node.report.sr import build_reports, build_sr, write_sr_for_result

__all__ = ["build_reports", "build_sr", "write_sr_for_result"]
