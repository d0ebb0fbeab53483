"""The one check of outside text the alarm workflow stores (comments, context)."""

from __future__ import annotations

__all__ = ["text_fault"]


def text_fault(value: str, what: str, max_chars: int) -> str | None:
    """Why ``value`` cannot be stored as text (None: it can): at most ``max_chars``
    characters, no NUL (PostgreSQL refuses it), no lone surrogate (no database encodes it).
    The bridge's readings apply the same rules (docs/bridge.md)."""
    if len(value) > max_chars:
        return f"{what} is too long: {len(value)} characters, limit is {max_chars}"
    if "\x00" in value:
        return f"{what} contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{what} is not valid UTF-8 text (a lone surrogate at character {exc.start})"
    return None
