"""The LSTV screen on the same studies stored uncompressed and in each lossless transfer syntax.

A lossless syntax gives back the very pixel values that were encoded, so the screen must give the
same series, score, verdict and disc points whichever syntax a PACS sends. This bench takes
generated study folders (``truth.json``, e.g. ``bench/fifth_phantom.py`` output: 12- and 16-bit
images, rows != columns, 256-640 matrices, decoy series), re-encodes every file with the real
command-line encoders the tests use (DCMTK ``dcmcjpeg`` / ``dcmcjpls`` / ``dcmcrle`` /
``dcmconv``, GDCM ``gdcmconv``, OpenJPH ``ojph_compress`` for HTJ2K; ``tests/dicom_factory.py``),
runs ``scp_node.analysis.analyze_study`` (shipped weights, CPU) on the original and on each
re-encoded copy, and counts the studies whose results agree exactly (series, score, assessable,
suspected, not-assessable reason, every level's source pixel point), and which decoder plugin
decoded the pixels (the node's own ``decoded ... plugin=`` log lines). A syntax given as a UID
must give identical results (exit 1 otherwise). ``j2k-lossy:R`` (JPEG 2000 .91 at R:1 with
``gdcmconv --j2k --lossy -r R``, as a site's lossy archive might hold the series) is measured,
not judged: how many verdicts stayed, and how far scores and disc points moved.

    python bench/lossless_agreement.py /tmp/fifth [--syntax 1.2.840.10008.1.2.4.80 ...]
    python bench/lossless_agreement.py /tmp/fifth --syntax j2k-lossy:10 j2k-lossy:20
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import bench_screen  # noqa: E402

from tests.dicom_factory import encode, encode_htj2k  # noqa: E402

#: The lossless syntaxes a PACS may send (PS3.5 A.4 / A.5 / A.8), deflate included.
LOSSLESS = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction (process 14 SV1)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (process 14)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
)
_HTJ2K = {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}
_DECODED = re.compile(r"ts=(\S+) .* plugin=(\S+)")


class DecoderTally(logging.Handler):
    """Counts (transfer syntax, plugin) of the node's ``decoded sop=... plugin=...`` lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        found = _DECODED.search(record.getMessage())
        if found and record.getMessage().startswith("decoded "):
            self.counts[(found.group(1), found.group(2))] += 1


_LOSSY_J2K = "j2k-lossy:"


def _encode_lossy_j2k(source: Path, destination: Path, spec: str) -> Path:
    """JPEG 2000 (lossy, .91) at the compression ratio named by ``spec`` ("j2k-lossy:R")."""
    rate = spec.removeprefix(_LOSSY_J2K)
    subprocess.run(
        ["/usr/bin/gdcmconv", "--j2k", "--lossy", "-r", rate, str(source), str(destination)],
        check=True,
        capture_output=True,
    )
    return destination


def reencode(study: Path, out: Path, syntax: str) -> None:
    """Every DICOM file of ``study`` re-encoded into ``syntax`` (a transfer syntax UID, or
    ``j2k-lossy:R``) under ``out``, at the same relative paths."""
    if syntax.startswith(_LOSSY_J2K):
        encoder = _encode_lossy_j2k
    else:
        encoder = encode_htj2k if syntax in _HTJ2K else encode
    for path in bench_screen.dicom_files(study):
        target = out / path.relative_to(study)
        target.parent.mkdir(parents=True, exist_ok=True)
        encoder(path, target, syntax)


def summary(result: Any) -> dict[str, Any]:
    """The fields of a result that a lossless re-encoding must not change."""
    return {
        "applicable": result.applicable,
        "not_applicable": result.reason,
        "series": result.series_instance_uid,
        "score": result.lstv_score,
        "assessable": result.assessable,
        "suspected": result.lstv_suspected,
        "reason": result.not_assessable_reason,
        "points": [(f.level, f.sop_instance_uid, f.pixel_xy) for f in result.levels],
    }


def changes(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """How far re-encoded results (second of each pair) moved from the stored ones: verdicts
    kept (series, applicable, assessable, suspected), and over studies assessable both times
    the median and largest score change and the largest move of a level's point (source px)."""
    verdict = ("series", "applicable", "assessable", "suspected")
    kept = sum(all(a[k] == b[k] for k in verdict) for a, b in pairs)
    both = [(a, b) for a, b in pairs if a["assessable"] and b["assessable"] and a["points"]]
    deltas = sorted(abs(a["score"] - b["score"]) for a, b in both)
    moves = [
        math.dist(pa[2], pb[2])
        for a, b in both
        for pa, pb in zip(a["points"], b["points"], strict=False)
        if pa[0] == pb[0]  # same level (a lossy copy may have new SOP Instance UIDs)
    ]
    return {
        "verdicts_kept": kept,
        "score_change_median": round(deltas[len(deltas) // 2], 6) if deltas else None,
        "score_change_max": round(deltas[-1], 6) if deltas else None,
        "point_move_max_px": round(max(moves), 3) if moves else None,
    }


def run(roots: list[Path], syntaxes: list[str], threads: int, work: Path) -> dict[str, Any]:
    """Analyse every study as stored and in each syntax; the agreement per syntax."""
    from scp_node.analysis import analyze_study

    settings, engine = bench_screen.build_engine(None, threads)
    studies = bench_screen.find_studies(roots)
    tally = DecoderTally()
    logging.getLogger("scp_node.codecs").addHandler(tally)
    logging.getLogger("scp_node.codecs").setLevel(logging.INFO)
    reference = {
        s: summary(analyze_study(bench_screen.dicom_files(s), settings, engine)) for s in studies
    }
    report: dict[str, Any] = {"studies": len(studies), "syntaxes": {}}
    for syntax in syntaxes:
        started = time.perf_counter()
        folders = {s: work / syntax / f"{s.parent.name}-{s.name}" for s in studies}
        with ThreadPoolExecutor(max(threads, 1)) as pool:
            list(pool.map(reencode, studies, folders.values(), [syntax] * len(studies)))
        encoded_s = time.perf_counter() - started
        tally.counts.clear()
        differing, pairs = [], []
        for study, folder in folders.items():
            got = summary(analyze_study(bench_screen.dicom_files(folder), settings, engine))
            pairs.append((reference[study], got))
            if got != reference[study]:
                differing.append({"study": str(study), "stored": reference[study], "got": got})
        report["syntaxes"][syntax] = {
            "agree": len(studies) - len(differing),
            "judged": not syntax.startswith(_LOSSY_J2K),
            **changes(pairs),
            "differ": differing,
            "decoded_by": {f"{ts} {plugin}": n for (ts, plugin), n in tally.counts.items()},
            "encode_s": round(encoded_s, 1),
            "analyse_s": round(time.perf_counter() - started - encoded_s, 1),
        }
        shutil.rmtree(work / syntax, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding study folders")
    parser.add_argument("--syntax", nargs="+", default=list(LOSSLESS), help="transfer syntaxes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and encoders")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if not bench_screen.find_studies(args.roots):
        print(f"no study folder (with truth.json) under {[str(r) for r in args.roots]}")
        return 2
    with tempfile.TemporaryDirectory(prefix="lossless-") as work:
        report = run(args.roots, args.syntax, args.threads, Path(work))
    for syntax, row in report["syntaxes"].items():
        decoders = ", ".join(f"{k}: {v}" for k, v in row["decoded_by"].items()) or "none logged"
        print(
            f"{syntax}: {row['agree']}/{report['studies']} identical, "
            f"{row['verdicts_kept']} verdicts kept, score change median "
            f"{row['score_change_median']} max {row['score_change_max']}, point move max "
            f"{row['point_move_max_px']} px (encode {row['encode_s']} s, analyse "
            f"{row['analyse_s']} s; decoded by {decoders})"
        )
        if not row["judged"]:
            continue
        for diff in row["differ"]:
            stored, got = diff["stored"], diff["got"]
            changed = {k: (v, got[k]) for k, v in stored.items() if got[k] != v}
            print(f"  differs: {diff['study']}: {changed}"[:600])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    failed = any(row["differ"] for row in report["syntaxes"].values() if row["judged"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
