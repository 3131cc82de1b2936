"""kiosk.toml files for the tests: one writer and one builder.

:func:`write_config` writes exactly the sections it is given (a test about one key, a refusal).
:func:`kiosk_config` builds the config of a kiosk whose files all live in the test's folder, the
sections given on top, key by key::

    cfg = kiosk_config(tmp_path, central=central, source=f"file:{folder}", api=QUICK_RETRY, kiosk={"id": "kiosk-svc"})

    >>> import tempfile, tomllib
    >>> folder = Path(tempfile.mkdtemp())
    >>> written = tomllib.loads(kiosk_config(folder, api={"url": "http://127.0.0.1:9"}, kiosk={"id": "k-1"}).read_text())
    >>> written["kiosk"] == {"runtime_dir": str(folder / "run"), "id": "k-1"}
    True
    >>> written["api"]
    {'url': 'http://127.0.0.1:9'}
"""

from __future__ import annotations

from pathlib import Path

#: Delivery retries in tens of milliseconds, for tests that wait for a delivery after a failure.
QUICK_RETRY = {"backoff_base_s": 0.05, "backoff_cap_s": 0.5}


def write_config(path: Path, **sections) -> Path:
    """A kiosk.toml at ``path`` holding exactly ``section={key: value}``; mode 0600 when it holds
    ``api.token`` (the kiosk refuses a token in a config file others may read)."""
    import tomli_w

    path.write_text(tomli_w.dumps(sections))
    if "token" in sections.get("api", {}):
        path.chmod(0o600)
    return path


def kiosk_config(
    folder: Path, *, name: str = "kiosk.toml", central=None, source: str | None = None, pace: str | None = "fast", **sections
) -> Path:
    """``folder/name`` for a kiosk whose runtime directory and outbox are in ``folder``.

    ``central`` (its URL, or anything with a ``url``: the ``central`` fixture, a ``FakeCentral``)
    sets ``api.url`` and the token the tests' centrals accept. ``source`` sets ``camera.source``,
    a ``file:`` source played at ``pace`` (None: the default pace). ``sections`` add or replace
    keys of a section and leave its other keys as built.
    """
    from support.central import CENTRAL_TOKEN

    built: dict[str, dict] = {"kiosk": {"runtime_dir": str(folder / "run")}, "outbox": {"path": str(folder / "outbox.db")}}
    if source is not None:
        built["camera"] = {"source": source, "pace": pace} if source.startswith("file:") and pace else {"source": source}
    if central is not None:
        built["api"] = {"url": central if isinstance(central, str) else central.url, "token": CENTRAL_TOKEN}
    for section, keys in sections.items():
        built[section] = {**built.get(section, {}), **keys}
    return write_config(folder / name, **built)
