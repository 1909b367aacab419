"""Class labels: the one rule every front end and file format shares."""

from __future__ import annotations

import unicodedata

MAX_LABEL_LEN = 100


def validate_label(label: object) -> str:
    """A class label: a non-empty string of at most MAX_LABEL_LEN characters in Unicode NFC form, with no
    control or invisible format characters (so "cat" and "cat\u200b" cannot be two classes)."""
    if not isinstance(label, str):
        raise ValueError(f"a label must be a string, got {type(label).__name__}")
    label = unicodedata.normalize("NFC", label).strip()
    if not label:
        raise ValueError("a label must not be empty")
    if len(label) > MAX_LABEL_LEN:
        raise ValueError(f"a label must be at most {MAX_LABEL_LEN} characters, got {len(label)}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in label):
        raise ValueError(f"a label must not contain control or invisible characters: {label!r}")
    return label
