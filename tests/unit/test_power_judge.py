"""What the power-state sync makes of one reading (inventory.power.judge)."""

from __future__ import annotations

import pytest

from inventory.power import UNKNOWN, PowerPolicy, PowerRecord, judge

REPORT, RESTORE = PowerPolicy.REPORT, PowerPolicy.RESTORE


def record(recorded: str | None = "on", failures: int = 0, *, unreachable: bool = False,
           maintenance: bool = False) -> PowerRecord:  # fmt: skip
    return PowerRecord("n1", recorded, failures, unreachable, False, maintenance)


@pytest.mark.parametrize("policy", [REPORT, RESTORE])
def test_a_reading_equal_to_the_record_changes_nothing(policy: PowerPolicy) -> None:
    verdict = judge(record("on"), "on", policy=policy, unreachable_after=3)
    assert (verdict.record, verdict.events, verdict.drift, verdict.restore_to) == (
        "on",
        [],
        False,
        None,
    )


def test_the_first_reading_becomes_the_record_without_an_event() -> None:
    verdict = judge(record(None), "off", policy=RESTORE, unreachable_after=3)
    assert (verdict.record, verdict.events, verdict.restore_to) == ("off", [], None)


def test_report_takes_the_reading_as_the_record() -> None:
    verdict = judge(record("on"), "off", policy=REPORT, unreachable_after=3)
    assert verdict.drift and verdict.record == "off" and verdict.restore_to is None
    [event] = verdict.events
    assert (event.from_state, event.to_state) == ("on", "off")
    assert "recorded on, the BMC reads off" in event.reason


def test_restore_keeps_the_record_and_powers_back() -> None:
    verdict = judge(record("on"), "off", policy=RESTORE, unreachable_after=3)
    assert verdict.drift and verdict.record == "on" and verdict.restore_to == "on"
    assert "restoring on" in verdict.events[0].reason


def test_restore_leaves_a_node_in_maintenance_as_found() -> None:
    verdict = judge(record("on", maintenance=True), "off", policy=RESTORE, unreachable_after=3)
    assert verdict.record == "off" and verdict.restore_to is None
    assert "in maintenance: not restored" in verdict.events[0].reason


def test_failed_reads_flag_the_node_at_the_threshold_once() -> None:
    first = judge(record("on"), None, "timeout", policy=REPORT, unreachable_after=2)
    assert (first.bmc_failures, first.unreachable, first.events) == (1, False, [])
    second = judge(record("on", 1), None, "timeout", policy=REPORT, unreachable_after=2)
    assert (second.bmc_failures, second.unreachable, second.record) == (2, True, "on")
    [event] = second.events
    assert (event.from_state, event.to_state) == ("on", UNKNOWN) and "timeout" in event.reason
    third = judge(record("on", 2, unreachable=True), None, "x", policy=REPORT, unreachable_after=2)
    assert (third.bmc_failures, third.unreachable, third.events) == (3, True, [])


def test_an_answer_clears_the_flag_and_still_judges_the_reading() -> None:
    verdict = judge(record("on", 5, unreachable=True), "off", policy=RESTORE, unreachable_after=2)
    assert (verdict.bmc_failures, verdict.unreachable, verdict.restore_to) == (0, False, "on")
    assert [(e.from_state, e.to_state) for e in verdict.events] == [(UNKNOWN, "off"), ("on", "off")]
