"""Kernel command line parsing and merging, shared by the renderer and the verifier."""

from __future__ import annotations

from collections.abc import Iterable


def arg_key(arg: str) -> str:
    """`hugepages=16` -> `hugepages`; a bare flag (`quiet`) is its own key."""
    return arg.split("=", 1)[0]


def arg_value(arg: str) -> str | None:
    return arg.split("=", 1)[1] if "=" in arg else None


def merge_args(*groups: Iterable[str]) -> list[str]:
    """Concatenate argument groups. A key given in a later group replaces every earlier
    argument with that key, in the place of the first one, so order (hugepagesz before
    hugepages) survives an operator's override; repeats within one group (console=tty0
    console=ttyS0) are kept, as the kernel uses them all."""
    result: list[str] = []
    for group in groups:
        args = list(group)
        keys = {arg_key(a) for a in args}
        placed: set[str] = set()
        merged: list[str] = []
        for arg in result:
            key = arg_key(arg)
            if key not in keys:
                merged.append(arg)
            elif key not in placed:
                merged += [a for a in args if arg_key(a) == key]
                placed.add(key)
        merged += [a for a in args if arg_key(a) not in placed]
        result = merged
    return result


def parse_cmdline(cmdline: str) -> dict[str, str | None]:
    """Key -> value as the kernel sees it (the last occurrence wins, like most parameters)."""
    return {arg_key(tok): arg_value(tok) for tok in cmdline.split()}
