"""The daemon's collector settings: pauses rarer, collector still on, start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cti.gctune import YOUNG_THRESHOLD, tune_for_service


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tuning_keeps_the_collector_on_and_scans_start_up_objects_no_more(
    restore_gc: None,
) -> None:
    survivor = [object() for _ in range(1000)]
    tune_for_service()
    assert gc.isenabled()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700  # CPython's default is 700
    assert gc.get_freeze_count() >= len(survivor)
