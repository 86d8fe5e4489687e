"""Passwords kept out of what the project prints: a database or tracking URL is shown as
``scheme://user:***@host/...``, malformed or not.

A parser cannot be trusted with this: a password holding ``@`` or ``/`` is where URL parsers disagree,
and SQLAlchemy's ``make_url`` then takes part of the password for the host and prints it. Here the
password is everything between the first ``:`` after the user name and the *last* ``@`` of the
whitespace-free run of text that starts with ``scheme://``: too much is hidden rather than too little.
"""

from __future__ import annotations

import re

#: ``scheme://user:password@host``; the greedy password stops at the run's last ``@``
_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^\s:/@]*):(?P<password>\S*)@"
                          r"(?P<host>[^\s@]*)")
MASK = "***"
#: pieces of a password shorter than this are not searched for on their own (they would hide ordinary words)
_MIN_PIECE = 4


def mask_url(url: str) -> str:
    """The URL as it may be printed: its password replaced by ``***`` (user, host and the rest kept).

    Returns:
        ``url`` unchanged when it carries no ``user:password@``.
    """
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@{m['host']}", url)


def password_of(url: str) -> str | None:
    """The password a URL carries, as written (``None`` without one)."""
    found = _CREDENTIALS.search(url)
    return found["password"] if found and found["password"] else None


def mask_secrets(text: str, *urls: str) -> str:
    """``text`` with every URL's password masked, and with the passwords of ``urls`` (and their pieces
    around ``@``, ``:`` and ``/``, which a parser's error may quote alone, e.g. a host it could not resolve)
    masked wherever they appear.

    Returns:
        The text safe to print.
    """
    for url in urls:
        password = password_of(url or "")
        if password:
            text = text.replace(url, mask_url(url)).replace(password, MASK)
            for piece in re.split(r"[@:/]", password):
                if len(piece) >= _MIN_PIECE:
                    text = text.replace(piece, MASK)
            # a parser that split the password at one of these quotes the rest as part of the host: "tPW@host"
            for cut in (i + 1 for i, char in enumerate(password) if char in "@:/"):
                if password[cut:]:
                    text = text.replace(password[cut:] + "@", MASK + "@")
    return mask_url(text)
