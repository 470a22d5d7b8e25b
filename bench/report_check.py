"""The node's SR and Secondary Capture for generated study folders, through DICOM's validators.

For every study folder (``truth.json``; e.g. the blind generators' output) the study is screened
by ``scp_node.analysis.analyze_study`` (``Settings()`` defaults, shipped weights, CPU) and its
reports are built as the model worker builds them (headers of the chosen series; pixels of the
slice the SC draws). Each SR and SC is written under ``--out`` and checked with dicom3tools
``dciodvfy`` (lines starting "Error") and DCMTK ``dsrdump`` (the SR must be readable). Prints how
many of each kind (SR / SC; not assessable; a level read on its second peak) and every file with
an error.

    python bench/report_check.py /tmp/third /tmp/fourth /tmp/fifth [--out /tmp/reports]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_screen import build_engine, dicom_files, find_studies  # noqa: E402
from scp_node.analysis import analyze_study  # noqa: E402
from scp_node.report.sc import chosen_slice  # noqa: E402
from scp_node.report.sr import build_reports  # noqa: E402


def errors(path: Path, sr: bool) -> list[str]:
    """dciodvfy's error lines for ``path`` (and dsrdump's complaint for an SR)."""
    run = subprocess.run(["/usr/bin/dciodvfy", str(path)], capture_output=True, text=True)
    found = [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")]
    if sr:
        dump = subprocess.run(["/usr/bin/dsrdump", str(path)], capture_output=True, text=True)
        if dump.returncode:
            found.append(f"dsrdump exit {dump.returncode}: {dump.stderr[:200]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding study folders")
    parser.add_argument("--out", type=Path, default=Path("/tmp/scp-node-report-check"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    settings, engine = build_engine(None, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    tally: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, list[str]]] = []
    for folder in find_studies(args.roots):
        files = dicom_files(folder)
        result = analyze_study(files, settings, engine)
        drawn = chosen_slice(result)
        sources = []
        for path in files:
            head = pydicom.dcmread(path, stop_before_pixels=True)
            if head.SeriesInstanceUID == result.series_instance_uid:
                sources.append(head if head.SOPInstanceUID != drawn else pydicom.dcmread(path))
        kind = " not assessable" if result.applicable and not result.assessable else ""
        if result.levels_repaired:
            kind += " repaired"
        for i, ds in enumerate(build_reports(result, sources, settings.report)):
            path = args.out / f"{folder.parent.name}-{folder.name}-{i}.dcm"
            ds.save_as(path, enforce_file_format=True)
            tally[("SR" if i == 0 else "SC") + kind] += 1
            found = errors(path, sr=i == 0)
            if found:
                bad.append((path.name, found[:3]))
    print(dict(tally))
    print(f"files with errors: {len(bad)}")
    for name, found in bad:
        print(name, found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
