"""Hostile DICOMweb requests (issue 13): every answer is a deliberate 4xx, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from scp_node.node import Node
from tests.conftest import node_settings, run_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    settings = node_settings(tmp_path_factory.mktemp("hostile-web"), http={"port": 0})
    with run_node(settings) as running:
        yield running


@pytest.fixture(scope="module")
def base(node: Node) -> str:
    return f"http://127.0.0.1:{node.http.port}/dicom-web"


@pytest.mark.parametrize(
    "query",
    [
        "offset=99999999999999999999",
        "offset=9223372036854775808",
        "offset=-1",
        "offset=1e3",
        "offset=%E2%91%A0",  # a Unicode digit
        "limit=99999999999999999999",
        "limit=-5",
        "limit=abc",
        "offset=" + "9" * 5000,
        "StudyInstanceUID=" + ",".join(f"1.2.{i}" for i in range(1001)),
        "PatientID=" + "A" * 300,
    ],
    ids=lambda q: q[:30],
)
@pytest.mark.parametrize("level", ["studies", "series", "instances"])
def test_qido_out_of_range_parameters_are_400(base: str, level: str, query: str) -> None:
    """D6: out-of-range or malformed QIDO-RS parameters get 400 with a reason, never 500."""
    answer = httpx.get(f"{base}/{level}?{query}", timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]


def test_qido_in_range_paging_still_works(base: str) -> None:
    for query in ("offset=0", "offset=1000000000", "limit=1000&offset=5", "limit=0"):
        assert httpx.get(f"{base}/studies?{query}", timeout=10).status_code in (200, 204)
