"""A real Elasticsearch node, from the test distribution published on Maven Central.

The `integ-test-zip` distribution has no bundled JDK and only a few modules
(no painless, no scaled_float, no ILM): our mappings and writes avoid all of them.
9.x needs Java 21 or newer. Elasticsearch refuses to run as root, so as root the
node runs as the unprivileged system user `currencies-es`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from currencies_local.jvm import cache_dir, find_java_home
from currencies_local.processes import ManagedProcess, StartupError, http_status

VERSION = "9.5.4"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
MIN_JAVA = 21
SERVICE_USER = "currencies-es"
HEAP = "512m"


def ensure_distribution(progress: Callable[[str], None] = lambda _: None) -> Path:
    """Download (Maven) and unpack the distribution once; returns its home directory."""
    home = cache_dir() / f"elasticsearch-{VERSION}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    if shutil.which("mvn") is None:
        raise StartupError("Maven (mvn) is needed to fetch Elasticsearch; install it (apt-get install maven)")
    download = cache_dir() / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    archive = download / f"elasticsearch-{VERSION}.zip"
    if not archive.exists():
        progress(f"downloading {ARTIFACT} from Maven Central (about 130 MB, once)")
        # Downloaded aside and renamed into place: a concurrent start never reads half a zip.
        fetching = Path(tempfile.mkdtemp(dir=download, prefix="fetch-"))
        command = [
            "mvn",
            "-q",
            "-B",
            "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={fetching}",
            "-Dmdep.stripVersion=false",
        ]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(fetching, ignore_errors=True)
            raise StartupError(
                f"could not fetch {ARTIFACT} with Maven:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        os.replace(fetching / archive.name, archive)
        shutil.rmtree(fetching, ignore_errors=True)
    progress("unpacking Elasticsearch")
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix="unpack-"))
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(staging)
    for path in staging.rglob("*"):  # zipfile drops the executable bits
        if path.is_file() and (path.parent.name == "bin" or "native" in path.parts or path.suffix == ".sh"):
            path.chmod(0o755)
    (staging / f"elasticsearch-{VERSION}").rename(home)
    shutil.rmtree(staging)
    return home


def _service_user() -> pwd.struct_passwd | None:
    """The user the node runs as when we are root (created on first use)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True
        )
        return pwd.getpwnam(SERVICE_USER)


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    for path in [root, *root.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)


def start_elasticsearch(
    host: str, port: int, work_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> ManagedProcess:
    """Start a single-node cluster with fresh data in `work_dir`; returns once it is healthy."""
    java_home = find_java_home(MIN_JAVA, f"Elasticsearch {VERSION}")
    home = ensure_distribution(progress)
    data, logs = work_dir / "es-data", work_dir / "es-logs"
    data.mkdir(parents=True)
    logs.mkdir(parents=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(work_dir),
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}",
        "ES_TMPDIR": str(work_dir / "es-tmp"),
    }
    (work_dir / "es-tmp").mkdir()
    command = [
        str(home / "bin" / "elasticsearch"),
        "-Expack.security.enabled=false",
        "-Ediscovery.type=single-node",
        f"-Enetwork.host={host}",
        f"-Ehttp.port={port}",
        "-Etransport.port=0",
        f"-Epath.data={data}",
        f"-Epath.logs={logs}",
        "-Ecluster.name=currencies-local",
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        "-Expack.ml.enabled=false",
    ]
    user = _service_user()
    if user is not None:
        if home.stat().st_uid != user.pw_uid:
            _chown_tree(home, user)
        for path in (work_dir, data, logs, work_dir / "es-tmp"):
            os.chown(path, user.pw_uid, user.pw_gid)
        # setpriv execs in place, so our SIGTERM reaches the node's launcher directly.
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *command]
    progress(f"starting Elasticsearch {VERSION} on http://{host}:{port}")
    process = ManagedProcess("Elasticsearch", command, work_dir / "elasticsearch.log", env=env)
    url = f"http://{host}:{port}"
    health = f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s"
    process.wait_until(lambda: http_status(health) == 200, timeout_s=120)
    return process
