"""The verdict on a cleaning boot's report: a node is clean only when every disk its agent
found was wiped and read back as zeros (docs/cleaning.md)."""

from __future__ import annotations

from core.facts import CleanReport, DiskWipe


def problems(report: CleanReport | None) -> list[str]:
    """Why the node is not clean; empty: it is."""
    if report is None:
        return ["the cleaning boot phoned home without a clean report"]
    found = []
    for disk in report.disks:
        if disk.error is not None:
            found.append(f"{disk.device}: {disk.error}")
        elif disk.method is None:
            found.append(f"{disk.device}: no wipe method worked")
        elif not disk.verified:
            found.append(f"{disk.device}: read back data after {disk.method}")
    return found


def summary(report: CleanReport) -> str:
    """One line for the node's event: what was wiped and how."""
    if not report.disks:
        return "cleaned: the agent found no disks"
    return "cleaned: " + ", ".join(_one(d) for d in report.disks)


def _one(disk: DiskWipe) -> str:
    return f"{disk.device} ({disk.size_bytes // 2**20} MiB, {disk.method}, verified)"
