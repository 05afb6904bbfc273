"""How strong a configured secret must be before glasskey agrees to start with it.

The admin token opens the admin API and the dashboard, so a guessable one is an open door. A
token is refused when it is shorter than ``ADMIN_TOKEN_MIN_CHARS``, uses fewer than
``DISTINCT_CHARS_MIN`` different characters (``aaaa…``, ``abab…``), or repeats a short pattern
(``0123456789`` four times). ``secrets.token_urlsafe(32)`` (what the demo generates: 43
characters) passes with a wide margin; a person's password usually does not, on purpose.
"""

from __future__ import annotations

ADMIN_TOKEN_MIN_CHARS = 32
DISTINCT_CHARS_MIN = 10
# A token that is one pattern of at most this many characters said again and again is refused.
REPEATED_PATTERN_MAX_CHARS = 16
GENERATE_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def weakness_of(secret: str, min_chars: int = ADMIN_TOKEN_MIN_CHARS) -> str | None:
    """Why ``secret`` is too weak to be used, or None. The message never quotes the secret."""
    if len(secret) < min_chars:
        return f"must be at least {min_chars} characters ({GENERATE_HINT})"
    if len(set(secret)) < DISTINCT_CHARS_MIN:
        return f"is too weak: it uses fewer than {DISTINCT_CHARS_MIN} different characters"
    for size in range(1, REPEATED_PATTERN_MAX_CHARS + 1):
        pattern = secret[:size]
        if (pattern * (len(secret) // size + 1))[: len(secret)] == secret:
            return f"is too weak: it repeats a pattern of {size} characters"
    return None
