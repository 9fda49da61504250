"""The Hugging Face hub as seen from this machine: offline or not, reachable or not, what the cache holds.

With no network, huggingface_hub retries every file it is asked for (`Retrying in 8s [Retry 4/5]`,
about a minute and a dozen lines per file) before it fails. `unreachable()` asks the hub endpoint
once, with a short timeout, so that a load can fail in one line - or read a cached model without
asking the hub - and `banglaocr doctor` can say at a glance whether the hub answers.

>>> offline({"HF_HUB_OFFLINE": "1"}), offline({"HF_HUB_OFFLINE": "0"})
(True, False)
>>> cached("not a repo id")
False
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

PROBE_TIMEOUT_S = 4.0
"""How long the hub endpoint gets to answer (name lookup included) before it counts as unreachable."""


def offline(environ: Mapping[str, str] | None = None) -> bool:
    """True when HF_HUB_OFFLINE (or its older name TRANSFORMERS_OFFLINE) asks for the local cache only."""
    environ = os.environ if environ is None else environ
    values = (environ.get("HF_HUB_OFFLINE", ""), environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(value.strip().lower() in ("1", "true", "yes", "on") for value in values)


def endpoint() -> str:
    """The hub's address: HF_ENDPOINT (a mirror), else huggingface.co.

    >>> endpoint().startswith("http")
    True
    """
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.cache
def unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub endpoint answers at all (any HTTP status), else why not, in a few words.

    Asked once per process. The request runs in a daemon thread so that a name lookup that hangs
    cannot hold the caller beyond `timeout` (socket timeouts do not cover name lookups)."""
    outcome: list[str | None] = []
    probe = threading.Thread(target=lambda: outcome.append(_ask(endpoint(), timeout)), daemon=True)
    probe.start()
    probe.join(timeout + 0.5)
    return outcome[0] if outcome else f"{endpoint()} gave no answer within {timeout:.0f} s"


def _ask(url: str, timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # an answer, even 4xx/5xx: the hub is there
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        reason = getattr(reason, "strerror", None) or reason
        return f"{url} is unreachable ({reason})"
    return None


def cached(repo_id: str, repo_type: str = "model", revision: str | None = None) -> bool:
    """True when the local cache holds `repo_id` (a model's config.json; any snapshot of a data set)."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if repo_type == "model":
            return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    except ValueError:  # not a valid repo id (HFValidationError)
        return False
    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", Path(constants.HF_HOME) / "datasets"))
    return (folder.is_dir() and any(folder.iterdir())) or (datasets_cache / repo_id.replace("/", "___")).is_dir()


@contextlib.contextmanager
def cache_only(active: bool = True) -> Iterator[None]:
    """Within the block (when `active`), huggingface_hub and datasets read the local cache without asking the
    hub, as under HF_HUB_OFFLINE=1. Both libraries read that variable once, when they are imported, into a
    module constant (`huggingface_hub.constants.HF_HUB_OFFLINE`, `datasets.config.HF_HUB_OFFLINE`), so
    setting the variable now would change nothing: the constants are switched for the block instead."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    modules = [constants] + [sys.modules[name] for name in ("datasets.config",) if name in sys.modules]
    before = [module.HF_HUB_OFFLINE for module in modules]
    for module in modules:
        module.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for module, value in zip(modules, before):
            module.HF_HUB_OFFLINE = value
