"""docker-compose.yml and the Dockerfile, checked offline (no image can be pulled here).

What can be proven without Docker is: both compose validators accept the file, everything it
mounts or copies exists, every image is pinned, every long-running service is health-checked
and waited on, and every port and 127.0.0.1 URL agrees with the project's defaults, so the
stack and `make run` are the same system on the same addresses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from currencies_local import elasticsearch
from currencies_local.cli import up
from currencies_local.pipeline import Options

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PAUSE_IMAGE = "registry.k8s.io/pause"
URL_PORT = re.compile(r"127\.0\.0\.1:(\d+)")


def _option_default(name: str, fallback: int) -> int:
    """A port default of `Options`; `fallback` only until Options declares it."""
    for option in fields(Options):
        if option.name == name:
            return option.default  # type: ignore[return-value]
    return fallback


# The local stack's ports: Options' defaults are what `currencies up` uses.
PORTS = {
    "api": _option_default("api_port", 8000),
    "metrics": _option_default("metrics_port", 9108),
    "moto": _option_default("moto_port", 5000),
    "search": _option_default("search_port", 9200),
    "prometheus": _option_default("prometheus_port", 9090),
    "pushgateway": _option_default("pushgateway_port", 9091),
    "grafana": 3000,
    "kibana": 5601,
}
# The port each compose service serves (its health check must probe it).
SERVICE_PORTS = {
    "currencies": {PORTS["api"], PORTS["metrics"]},
    "moto": {PORTS["moto"]},
    "elasticsearch": {PORTS["search"]},
    "kibana": {PORTS["kibana"]},
    "prometheus": {PORTS["prometheus"]},
    "pushgateway": {PORTS["pushgateway"]},
    "grafana": {PORTS["grafana"]},
}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def holder() -> str:
    """The service whose network namespace every other service joins."""
    modes = {spec.get("network_mode") for spec in services().values()} - {None}
    assert len(modes) == 1, f"one shared namespace expected, got {modes}"
    (mode,) = modes
    assert mode.startswith("service:")
    return mode.removeprefix("service:")


def one_shot(spec: dict[str, Any]) -> bool:
    return spec.get("restart") == "no"


def tag_of(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    assert ":" in name, f"{image} has no tag"
    return name.split(":", 1)[1]


def dockerfile_instructions(keyword: str) -> list[str]:
    """Arguments of every `keyword` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [keyword]]


def bind_mounts() -> list[tuple[str, str, str]]:
    """(service, host path, container path) of every bind mount."""
    mounts = []
    for name, spec in services().items():
        for volume in spec.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    mounts.append((name, volume["source"], volume["target"]))
            elif volume.startswith((".", "/", "~")):
                source, target = volume.split(":")[:2]
                mounts.append((name, source, target))
    return mounts


# --- validators ---------------------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    assert binary is not None, "docker-compose is missing: `make system-deps` installs it (Debian package)"
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_spec_schema_accepts_the_file() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- what it mounts, builds and runs ------------------------------------------------------


def test_every_bind_mounted_path_exists_in_the_repo() -> None:
    mounts = bind_mounts()
    sources = {source for _, source, _ in mounts}
    assert {
        "./prometheus/prometheus.yml",
        "./prometheus/rules",
        "./grafana/provisioning",
        "./grafana/dashboards",
        "./kibana/saved_objects.ndjson",
    } <= sources
    for service, source, target in mounts:
        path = ROOT / source
        # A missing source would be created by Docker as an empty directory: silently nothing mounted.
        assert path.exists(), f"{service} mounts {source}, which does not exist"
        if Path(target).suffix:
            assert path.is_file(), f"{service}: {source} should be a file (mounted at {target})"
        else:
            assert path.is_dir(), f"{service}: {source} should be a directory (mounted at {target})"


def test_every_image_has_an_exact_version_tag() -> None:
    images = [spec["image"] for spec in services().values() if "image" in spec]
    images += [line.split()[0] for line in dockerfile_instructions("FROM")]
    for spec in services().values():
        assert "image" in spec or "build" in spec
    for image in images:
        # major.minor.patch: a shorter tag such as python:3.11-slim moves with every release. The pause
        # image is the exception: its releases are numbered major.minor (3.10 is one release).
        parts = "{1}" if image.startswith(PAUSE_IMAGE + ":") else "{2}"
        exact = rf"v?\d+(\.\d+){parts}(-[A-Za-z0-9.]+)*"
        assert re.fullmatch(exact, tag_of(image)), f"{image}: not an exact version"


def test_images_match_the_versions_the_project_runs_and_tests() -> None:
    specs = services()
    assert tag_of(specs["elasticsearch"]["image"]) == elasticsearch.VERSION
    assert tag_of(specs["kibana"]["image"]) == elasticsearch.VERSION
    heap = specs["elasticsearch"]["environment"]["ES_JAVA_OPTS"].split()
    assert heap == [f"-Xms{elasticsearch.HEAP}", f"-Xmx{elasticsearch.HEAP}"]
    pins = dict(
        line.split("==", 1) for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if "==" in line
    )
    assert tag_of(specs["moto"]["image"]) == pins["moto[server]"]
    # The dashboards are generated for this Grafana (grafana-foundation-sdk's build for it).
    assert tag_of(specs["grafana"]["image"]) == pins["grafana-foundation-sdk"].split("!")[1]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert tag_of(specs["currencies"]["image"]) == project["version"]
    (base,) = dockerfile_instructions("FROM")
    python = tuple(int(part) for part in tag_of(base).split("-")[0].split(".")[:2])
    assert python >= tuple(int(part) for part in project["requires-python"].removeprefix(">=").split("."))


def test_every_long_running_service_is_health_checked_and_waited_on() -> None:
    specs = services()
    owner = holder()
    # The namespace holder is a pause container: no shell, nothing to probe, nothing that can fail.
    assert specs[owner]["image"].startswith(PAUSE_IMAGE + ":")
    assert [name for name, spec in specs.items() if one_shot(spec)] == ["kibana-setup"]
    for name, spec in specs.items():
        if name == owner or one_shot(spec):
            assert "healthcheck" not in spec
            continue
        check = spec.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert spec.get("restart") == "unless-stopped", name
        assert spec["network_mode"] == f"service:{owner}", name
    for name, spec in specs.items():
        for dependency, condition in spec.get("depends_on", {}).items():
            wanted = "service_healthy" if "healthcheck" in specs[dependency] else "service_started"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"
    assert "kibana" in specs["kibana-setup"]["depends_on"]
    assert set(specs["currencies"]["depends_on"]) >= {"elasticsearch", "moto"}


def test_kibana_setup_imports_the_mounted_saved_objects_with_overwrite() -> None:
    spec = services()["kibana-setup"]
    script = " ".join(spec["command"])
    (target,) = [t for _, source, t in bind_mounts() if source == "./kibana/saved_objects.ndjson"]
    assert f"file=@{target}" in script
    assert f"127.0.0.1:{PORTS['kibana']}/api/saved_objects/_import?overwrite=true" in script
    assert "kbn-xsrf" in script
    assert '"success":true' in script


# --- ports and URLs -----------------------------------------------------------------------


def test_the_holder_publishes_every_port_of_the_stack_on_loopback() -> None:
    published = set()
    for entry in services()[holder()]["ports"]:
        address, host_port, container_port = str(entry).split(":")
        assert address == "127.0.0.1", f"{entry}: Elasticsearch runs without security, keep it off the network"
        assert host_port == container_port, entry
        published.add(int(container_port))
    assert published == set(PORTS.values())
    for name, spec in services().items():
        if name != holder():
            assert "ports" not in spec, f"{name} shares the holder's namespace; publish on the holder"


def test_every_loopback_url_in_the_compose_file_is_a_port_of_the_stack() -> None:
    ports = {int(port) for port in URL_PORT.findall(COMPOSE_FILE.read_text())}
    assert ports
    assert ports <= set(PORTS.values()), ports - set(PORTS.values())


def test_each_service_is_probed_and_addressed_on_its_own_port() -> None:
    specs = services()
    for name, expected in SERVICE_PORTS.items():
        probed = {int(port) for port in URL_PORT.findall(json.dumps(specs[name]["healthcheck"]["test"]))}
        assert probed == expected, f"{name} health check probes {probed}, serves {expected}"
    for name in ("prometheus", "pushgateway"):
        listen = [arg for arg in specs[name]["command"] if arg.startswith("--web.listen-address=")]
        assert listen == [f"--web.listen-address=0.0.0.0:{PORTS[name]}"]
    assert specs["moto"]["entrypoint"][-2:] == ["-p", str(PORTS["moto"])]
    assert specs["grafana"]["environment"]["GF_SERVER_HTTP_PORT"] == str(PORTS["grafana"])
    assert json.loads(specs["kibana"]["environment"]["ELASTICSEARCH_HOSTS"]) == [f"http://127.0.0.1:{PORTS['search']}"]


def test_the_runtime_command_is_one_the_cli_accepts_and_uses_the_stack() -> None:
    """The compose command parses with the real `currencies up` and points at the stack's services."""
    command = services()["currencies"]["command"]
    (cmd,) = dockerfile_instructions("CMD")
    assert json.loads(cmd) == command, "the Dockerfile's CMD and the compose command drifted apart"
    assert command[0] == "up"
    with up.make_context("up", list(command[1:])) as context:
        params = context.params
    assert params["moto_url"] == f"http://127.0.0.1:{PORTS['moto']}"
    assert params["search_url"] == f"http://127.0.0.1:{PORTS['search']}"
    assert params["api_port"] == PORTS["api"]
    assert params["metrics_port"] == PORTS["metrics"]
    # Published ports arrive on the namespace's external interface, not on its loopback.
    assert params["host"] == "0.0.0.0"
    # Prometheus and the Pushgateway are services of their own: a second pair would clash on their ports.
    assert params["prometheus"] is False


def test_prometheus_scrapes_the_stack_on_its_default_ports() -> None:
    config = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = {
        target for job in config["scrape_configs"] for static in job["static_configs"] for target in static["targets"]
    }
    wanted = {f"127.0.0.1:{PORTS[name]}" for name in ("metrics", "pushgateway", "prometheus")}
    assert targets == wanted
    mounted = {target for service, _, target in bind_mounts() if service == "prometheus"}
    for pattern in config.get("rule_files", []):
        assert f"/etc/prometheus/{Path(pattern).parent}" in mounted, pattern


def grafana_files(kind: str) -> list[Path]:
    folder = ROOT / "grafana/provisioning" / kind
    found = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    assert found, f"no provisioning files in {folder}"
    return found


def test_grafana_datasources_use_the_default_ports() -> None:
    wanted = {"prometheus": PORTS["prometheus"], "elasticsearch": PORTS["search"]}
    seen = set()
    for path in grafana_files("datasources"):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            (port,) = URL_PORT.findall(source["url"])
            assert int(port) == wanted[source["type"]], f"{path.name}: {source['name']} on {port}"
            seen.add(source["type"])
    assert seen == set(wanted)


def test_grafana_dashboard_providers_read_the_mounted_dashboards() -> None:
    mounted = [target for service, source, target in bind_mounts() if source == "./grafana/dashboards"]
    assert mounted
    providers = [
        provider for path in grafana_files("dashboards") for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers
    for provider in providers:
        assert any(Path(provider["options"]["path"]).is_relative_to(target) for target in mounted), provider


# --- the image's build context ------------------------------------------------------------


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (exclude?, regex) in file order, with Docker's `*`, `**` and `?`."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/?|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        rules.append((not negate, re.compile(regex)))
    return rules


def in_build_context(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for exclude, regex in _ignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = not exclude
    return included


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    copies = dockerfile_instructions("COPY")
    assert copies
    for copy in copies:
        *sources, _ = copy.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: missing"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            assert files, source
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert in_build_context(relative), f"{relative} is copied but .dockerignore leaves it out"
    assert not in_build_context(".venv/bin/python")
    assert not in_build_context("chalicelib/__pycache__/app.cpython-311.pyc")


@pytest.mark.parametrize("path", ["app.py", ".chalice/config.json", "pyproject.toml", "README.md"])
def test_the_runtime_finds_its_project_files_in_the_image(path: str) -> None:
    """The runtime loads app.py and .chalice/config.json from the project dir, and pip needs the rest."""
    copied = {source for copy in dockerfile_instructions("COPY") for source in copy.split()[:-1]}
    assert path in copied
