"""Print the analysis results of study folders as JSON (time and device left out), so that two
checkouts can be compared for identical results:

    PYTHONPATH=/tmp/base python bench/compare_results.py DIR... > base.json
    PYTHONPATH=$PWD python bench/compare_results.py DIR... > this.json && cmp base.json this.json

Run it from outside either checkout (``python -m`` / ``-c`` put the working directory first on
``sys.path``), or from the checkout whose code is meant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scp_node.analysis import analyze_study
from scp_node.config import load_settings
from scp_node.model.engine import LocalizerEngine


def main() -> int:
    settings = load_settings(None)
    engine = LocalizerEngine.from_settings(settings.model)
    out = {}
    for folder in sys.argv[1:]:
        paths = sorted(Path(folder).rglob("*.dcm"))
        result = analyze_study(paths, settings, engine).to_json()
        result.pop("inference_ms", None)
        result.pop("device", None)
        out[folder] = result
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
