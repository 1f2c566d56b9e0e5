"""Where a browser may be sent after sign-in: a path on this site, nowhere else.

`next=` arrives from the address bar, so anyone can craft it. Only same-origin relative
paths pass: a scheme, a host (`//evil`), a backslash (browsers read `/\\evil` as a host)
or a control character is refused rather than silently replaced, so a crafted link fails
visibly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_NEXT = "/meetings"


def safe_next(value: str | None) -> str | None:
    """`value` if it is a local path, `DEFAULT_NEXT` when absent, None when it is unsafe."""
    if not value:
        return DEFAULT_NEXT
    if len(value) > 512 or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
