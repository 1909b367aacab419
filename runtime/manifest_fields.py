"""Reading manifest fields with their types checked, so a hand-edited or damaged manifest fails with one line."""

from __future__ import annotations

from typing import Any

from .shot_offsets import ShotOffsets

_MISSING = object()


def field_of(d: dict[str, Any], key: str, types: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """d[key] if it has one of `types` (bool is not a number here); the default when absent or null."""
    value = d.get(key)
    if value is None:
        if default is _MISSING:
            raise ValueError(f"bundle manifest is missing the field {key!r}")
        return default
    if isinstance(value, bool) or not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise ValueError(f"bundle manifest field {key!r} must be {names}, got {type(value).__name__}")
    return value


def shot_offsets_of(value: Any) -> ShotOffsets | None:
    """The manifest's shot_offsets table (None when absent or empty)."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"bundle manifest: shot_offsets must map shot counts to offsets, got {type(value).__name__}")
    return ShotOffsets.from_mapping(value)
