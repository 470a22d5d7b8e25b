"""Spool consistency check (``scp-node spool check``): do the index and the spool files agree?

Finds, without changing anything:
- **orphans**: ``.dcm`` files under the spool that no index row points to (retention never
  deletes them);
- **missing**: index rows whose file is gone;
- **mismatches**: a row and its file that disagree (size, transfer syntax, SOP Instance UID, or a
  path that is not ``<Study>/<Series>/<SOP>.dcm`` of the row);
- **unparseable**: files whose data set does not pass the ingest checks (strict structure walk,
  PS3.5 §7) or whose File Meta Information (PS3.10 §7.1) cannot be read;
- **temp files** left in ``.tmp`` (removed at the next start).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from scp_node.ingest.strict_parse import MalformedDataSet, check_structure
from scp_node.store.index import InstanceIndex


@dataclass
class SpoolReport:
    """What :func:`check_spool` found; ``ok`` when nothing."""

    files: int = 0
    rows: int = 0
    orphans: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    unparseable: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.missing or self.mismatches or self.unparseable)

    def lines(self) -> list[str]:
        out = [f"{self.files} spool files, {self.rows} index rows"]
        for name in ("orphans", "missing", "mismatches", "unparseable", "temp_files"):
            for item in getattr(self, name):
                out.append(f"{name.replace('_', ' ')}: {item}")
        out.append("OK" if self.ok else "NOT CONSISTENT")
        return out


def _file_problem(path: Path, sop_uid: str, transfer_syntax: str, max_bytes: int) -> str | None:
    """Why the file does not hold the indexed instance (None when it does)."""
    try:
        with open(path, "rb") as handle:
            read_preamble(handle, force=True)
            meta = _read_file_meta_info(handle)
            if str(meta.get("MediaStorageSOPInstanceUID", "")) != sop_uid:
                return "File Meta SOP Instance UID differs from the index"
            if str(meta.get("TransferSyntaxUID", "")) != transfer_syntax:
                return "transfer syntax differs from the index"
            data = handle.read(max_bytes + 1)
    except Exception as exc:
        return f"not a readable Part 10 file: {exc.__class__.__name__}"
    if len(data) > max_bytes:
        return None  # too large to check here: not read
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(data, max_bytes + 1)
        except zlib.error as exc:
            return f"deflated data set does not inflate: {exc}"
        if len(data) > max_bytes:
            return None
    try:
        check_structure(
            data,
            implicit=transfer_syntax == ImplicitVRLittleEndian,
            little=transfer_syntax != ExplicitVRBigEndian,
        )
    except MalformedDataSet as exc:
        return f"data set malformed: {exc}"
    return None


def check_spool(
    spool_root: Path, index: InstanceIndex, max_bytes: int = 256 * 2**20
) -> SpoolReport:
    """Compare the spool under ``spool_root`` with ``index`` (read-only)."""
    root = Path(spool_root).resolve()
    report = SpoolReport()
    rows = {
        r["sop_instance_uid"]: dict(r)
        for r in index.db.connection().execute("SELECT * FROM instances").fetchall()
    }
    report.rows = len(rows)
    indexed_paths = {Path(r["path"]).resolve(): uid for uid, r in rows.items()}
    for path in sorted(root.glob("*/*/*.dcm")):
        report.files += 1
        if path.resolve() not in indexed_paths:
            report.orphans.append(str(path.relative_to(root)))
    report.temp_files = sorted(p.name for p in (root / ".tmp").glob("*") if p.is_file())
    for uid, row in sorted(rows.items()):
        path = Path(row["path"])
        if not path.exists():
            report.missing.append(f"{uid} ({path})")
            continue
        if path.resolve().is_relative_to(root):
            expected = root / row["study_uid"] / row["series_uid"] / f"{uid}.dcm"
            if path.resolve() != expected:
                report.mismatches.append(f"{uid}: path is not <study>/<series>/<sop>.dcm")
                continue
        if path.stat().st_size != row["size"]:
            report.mismatches.append(
                f"{uid}: size {path.stat().st_size} on disk, {row['size']} in the index"
            )
            continue
        problem = _file_problem(path, uid, row["transfer_syntax"], max_bytes)
        if problem is not None:
            (report.unparseable if "malformed" in problem or "readable" in problem
             else report.mismatches).append(f"{uid}: {problem}")  # fmt: skip
    return report
