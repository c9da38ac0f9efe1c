"""Follow-up rows outlive a release: what one release writes, the next one reads."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.app import followups
from workers.domain.messages import PurgeRecordings
from workers.domain.model import PurgeReason


def test_a_purge_follow_up_keeps_its_collection_times_and_reads_one_written_without() -> None:
    times = (datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=UTC), datetime(2025, 4, 2, tzinfo=UTC))
    command = PurgeRecordings(("r1", "r2"), PurgeReason.ERASURE, times)
    assert followups.decode(*followups.encode(command)) == command
    earlier = {"recording_ids": ["r1"], "reason": "retention"}  # a row from before the times
    assert followups.decode("purge", earlier) == PurgeRecordings(("r1",), PurgeReason.RETENTION)
