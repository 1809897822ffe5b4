"""What every benchmark reports alongside its numbers, and where it writes them.

Each benchmark writes its raw results as JSON under `bench/results/` and its tables
into its own marked section of `docs/benchmarks.md`, so the document only ever shows
numbers a command measured (the section says which command).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def full_mode() -> bool:
    """`BENCH_FULL=1`: the full run (the numbers in the docs); otherwise the quick one CI runs."""
    return os.environ.get("BENCH_FULL", "") == "1"


def machine() -> dict[str, object]:
    """The machine and software a result was measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except OSError:
        memory_kb = 0
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in ("elasticsearch", "opensearch-py", "boto3", "moto", "orjson")},
    }


def machine_line(info: dict[str, Any]) -> str:
    """One sentence saying what `machine()` found, for the docs."""
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items() if version)
    return (
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores, {info['memory_gb']} GB), "
        f"Python {info['python']}, {packages}."
    )


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (medians are what the tables show)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in the doc."""
    text = doc.read_text()
    pattern = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise KeyError(f"{doc} has no section bench:{name}; add its two marker lines first")
    doc.write_text(pattern.sub(lambda match: match.group(1) + markdown.rstrip() + "\n" + match.group(2), text))


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run, as the docs show it."""
    arguments = sys.argv[1:] if argv is None else argv
    return ("BENCH_FULL=1 " if full_mode() else "") + shlex.join(["python", "-m", f"bench.{name}", *arguments])


def publish(name: str, result: dict[str, Any], markdown: str, *, json_path: Path | None, write_docs: bool) -> None:
    """Print the tables, and write the raw result and the docs section when asked."""
    print(markdown)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if write_docs:
        write_section(name, markdown)
