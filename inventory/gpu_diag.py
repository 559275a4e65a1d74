"""GPU diagnostics' verdict from the tools' own output: `dcgmi diag -j` (NVIDIA DCGM 3.x and 4.x)
as a node's burn-in reports it (docs/commissioning.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The document's root key: DCGM up to 3.x, and 4.x.
ROOTS = ("DCGM GPU Diagnostic", "DCGM Diagnostic")


class GpuDiagError(ValueError):
    """The output is not a dcgmi diagnostic document, or says the diagnostic could not run."""


@dataclass(frozen=True)
class DiagResult:
    test: str
    gpu: str | None  # None: a test of the whole node (Deployment's)
    status: str  # pass, fail, warn or skip
    messages: tuple[str, ...] = ()


def parse_dcgmi(output: str) -> list[DiagResult]:
    """Every test's result per GPU. dcgmi may print a line before the JSON; tests it did not
    run are absent (DCGM 4.x) or null (nvvs)."""
    start = output.find("{")
    try:
        doc = json.loads(output[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise GpuDiagError(f"dcgmi output is not JSON: {exc}") from exc
    root = next((doc[key] for key in ROOTS if isinstance(doc, dict) and key in doc), None)
    if not isinstance(root, dict):
        raise GpuDiagError("dcgmi output has no diagnostic document")
    if root.get("runtime_error"):
        raise GpuDiagError(f"the diagnostic did not run: {root['runtime_error']}")
    results = []
    for category in root.get("test_categories") or []:
        for test in category.get("tests") or []:
            if not test:
                continue
            for result in test.get("results") or []:
                results.append(
                    DiagResult(
                        test=str(test.get("name")),
                        gpu=_gpu(result),
                        status=str(result.get("status", "")).strip().lower(),
                        messages=_messages(result.get("warnings")),
                    )
                )
    if not results:
        raise GpuDiagError("dcgmi output has no test results")
    return results


def _gpu(result: dict[str, Any]) -> str | None:
    for key in ("entity_id", "gpu_id", "gpu_ids"):  # 4.x, 3.3, before
        if key in result and result.get("entity_group", "GPU") == "GPU":
            return str(result[key])
    return None


def _messages(warnings: Any) -> tuple[str, ...]:
    """Up to 3.2 a string; since, objects with the text under `warning` (3.3.9 writes some
    under `warnings`)."""
    if warnings is None:
        return ()
    if isinstance(warnings, str):
        return (warnings,)
    out = []
    for item in warnings:
        if isinstance(item, dict):
            out.append(str(item.get("warning") or item.get("warnings") or item))
        else:
            out.append(str(item))
    return tuple(out)


def failures(results: list[DiagResult]) -> list[str]:
    """Each failed test and GPU with what the tool said; passes, warnings and skips are not."""
    out = []
    for r in results:
        if r.status == "fail":
            where = f" on GPU {r.gpu}" if r.gpu is not None else ""
            said = f": {'; '.join(r.messages)}" if r.messages else ""
            out.append(f"{r.test}{where} failed{said}")
    return out
