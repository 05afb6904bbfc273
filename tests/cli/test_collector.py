"""`glasskey serve` tunes the garbage collector for a long-lived server before it listens."""

from __future__ import annotations

import gc

from glasskey.cli.base import GC_THRESHOLDS, tune_collector


def test_start_up_objects_are_frozen_and_the_young_generation_is_larger() -> None:
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
