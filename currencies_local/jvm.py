"""Java and the download cache, shared by the search-engine launchers."""

from __future__ import annotations

import os
import re
from pathlib import Path

from currencies_local.processes import StartupError


def cache_dir() -> Path:
    """Where downloads and unpacked distributions are kept between runs.

    As root, not under /root: the unprivileged node user must be able to reach it.
    """
    override = os.environ.get("CURRENCIES_CACHE")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/currencies")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "currencies"


def find_java_home(minimum: int, needed_by: str) -> Path:
    """A JDK of at least `minimum`: $CURRENCIES_JAVA_HOME, $JAVA_HOME, then /usr/lib/jvm/*."""
    candidates = [os.environ.get("CURRENCIES_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    jvm_root = Path("/usr/lib/jvm")
    if jvm_root.is_dir():
        candidates += [str(path) for path in sorted(jvm_root.iterdir(), reverse=True)]
    for candidate in filter(None, candidates):
        if (_java_major(Path(candidate)) or 0) >= minimum:
            return Path(candidate)
    raise StartupError(
        f"{needed_by} needs Java {minimum} or newer and none was found "
        f"(looked at $CURRENCIES_JAVA_HOME, $JAVA_HOME and /usr/lib/jvm). Install a JDK {minimum}+ "
        "and set CURRENCIES_JAVA_HOME, or pass --search-url to use a running node."
    )


def _java_major(home: Path) -> int | None:
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.is_file():
        return None
    match = re.search(r'JAVA_VERSION="(\d+)', release.read_text(errors="replace"))
    return int(match.group(1)) if match else None
