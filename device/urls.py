"""Credentials in a URL: found, refused, and never shown.

The kiosk's only credential for the central is its bearer token. A URL such as
``https://user:s3cret@central.example.net`` would put a password in the config, the logs and
``kiosk config show``, and an HTTP library may turn it into ``Authorization: Basic ...``. The
schema (``api.url``) and :class:`device.central_client.CentralClient` refuse it with the same
words, and anything that prints a URL prints it through :func:`url_without_credentials`.

This module imports nothing heavy: the config check uses it.

>>> url_credentials_problem("https://central.example.net/kiosk")
>>> print(url_credentials_problem("https://user:s3cret@central.example.net"))  # doctest: +NORMALIZE_WHITESPACE
the URL carries a user name or password (https://***@central.example.net): the kiosk sends only its
bearer token; remove them from the URL and put the token in api.token_file
>>> url_without_credentials("https://user:s3cret@central.example.net:8443/v1")
'https://***@central.example.net:8443/v1'
"""

from __future__ import annotations

HIDDEN = "***"


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """(scheme and ``//``, userinfo or None, the rest): the authority ends at the first ``/``, ``?`` or ``#``,
    and its userinfo at the last ``@`` in it, as urllib and urllib3 read it."""
    scheme, sep, after = url.partition("//")
    if not sep:
        return url, None, ""
    end = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    userinfo, at, host = after[:end].rpartition("@")
    if not at:
        return scheme + sep, None, after
    return scheme + sep, userinfo, host + after[end:]


def url_credentials_problem(url: str) -> str | None:
    """Why ``url`` must not be used because it carries a user name or password (even empty), or None.

    The text never contains the user name or password.
    """
    start, userinfo, rest = _split_userinfo(url)
    if userinfo is None:
        return None
    return (
        f"the URL carries a user name or password ({start}{HIDDEN}@{rest}): the kiosk sends only its "
        "bearer token; remove them from the URL and put the token in api.token_file"
    )


def url_without_credentials(url: str) -> str:
    """``url`` as it may be logged or shown: any user name and password replaced by ``***``."""
    start, userinfo, rest = _split_userinfo(url)
    return url if userinfo is None else f"{start}{HIDDEN}@{rest}"
