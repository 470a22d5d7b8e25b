"""The model worker's warm-up reads highdicom's tables of the standard before the first study.

The loaders are private to highdicom: this test fails when an upgrade renames them, so the
warm-up does not silently become a no-op (the first study's SR would then take ~1.3 s longer).
"""

from __future__ import annotations

from highdicom import _standard_utils as standard

from scp_node.pipeline.worker import _read_highdicom_standard

LOADERS = ("get_sop_class_iod_map", "get_iod_module_map", "get_module_attribute_map")


def test_warm_up_fills_highdicoms_cached_tables() -> None:
    for name in LOADERS:
        getattr(standard, name).cache_clear()
    _read_highdicom_standard()
    for name in LOADERS:
        assert getattr(standard, name).cache_info().currsize == 1, name
