"""Protocol presets by name: the built-in ones (one per paper) plus the config's own."""

from __future__ import annotations

import copy

from ..errors import InputError


def resolve_protocols(names: list[str], overrides: dict) -> dict[str, dict]:
    """Map each protocol name to its spec; config presets override built-in ones of that name."""
    from .protocols import DEFAULT_PROTOCOLS

    known = {**copy.deepcopy(DEFAULT_PROTOCOLS), **copy.deepcopy(overrides)}
    missing = [n for n in names if n not in known]
    if missing:
        raise InputError(
            f"config error at evaluation.protocols: unknown protocol(s) {missing} "
            f"(built-in: {sorted(DEFAULT_PROTOCOLS)}; add others under evaluation.presets)"
        )
    for name in names:
        if not isinstance(known[name].get("metrics"), list) or not known[name]["metrics"]:
            raise InputError(f"config error at evaluation.presets.{name}: expected a non-empty list `metrics`")
    return {n: known[n] for n in names}
