"""docker-compose.yml (issue 14, item 9): healthchecks for the API and the workers, an S3-compatible store
(MinIO, its bucket made by an init container), a worker stop_grace_period past MMQ_SHUTDOWN_GRACE_S,
and the simulator opt-in (a profile): a real key in .env never goes to the simulator.

Docker is not needed: the file is read as YAML and compose's `${VAR:-default}` interpolation is applied
here with an empty environment (what `docker compose up` does on a machine whose .env holds only a key).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
MMQ_SERVICES = ("api", "worker")
_VAR = re.compile(r"\$\{(\w+)(:?-)((?:[^{}]|\{[^{}]*\})*)\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` (nested defaults too) and `$$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace("$$", "\0")
    while True:
        match = _VAR.search(text)
        if match is None:
            break
        name, op, default = match.groups()
        given = env.get(name)
        use = given if (given if op == ":-" else given is not None) else default
        text = text[: match.start()] + (use or "") + text[match.end() :]
    return text.replace("\0", "$")


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env={})


def test_the_file_is_compose_shaped(compose: dict):
    assert set(compose) <= {"x-mmq", "services", "volumes", "networks", "name"}
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        deps = service.get("depends_on") or {}
        assert set(deps) <= set(compose["services"]), name
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in compose["volumes"], (name, volume)


def test_api_and_worker_have_healthchecks(compose: dict):
    services = compose["services"]
    api = healthcheck_text(services["api"])
    assert api.startswith("CMD ") and re.search(r"http://127\.0\.0\.1:8000/(ready|health)\b", api)
    worker = services["worker"]
    check = healthcheck_text(worker)
    assert "/metrics" in check and "$MMQ_METRICS_PORT" in check  # the worker's own metrics port...
    assert "else" in check and "/proc/1/cmdline" in check  # ...or, without one, its process
    assert worker["environment"]["MMQ_METRICS_PORT"] == "9100"
    for name in MMQ_SERVICES:
        health = services[name]["healthcheck"]
        assert health["test"][0] in ("CMD", "CMD-SHELL")
        assert {"interval", "timeout", "retries"} <= set(health), name


def test_the_store_is_s3_on_a_minio_service_with_its_bucket_made(compose: dict):
    services = compose["services"]
    minio = next(name for name, s in services.items() if s.get("image", "").startswith("minio/minio"))
    assert "healthcheck" in services[minio]
    init = next(
        name
        for name, s in services.items()
        if s.get("image", "").startswith("minio/mc") and "mc mb" in " ".join(s.get("command") or [])
    )
    assert services[init]["depends_on"][minio]["condition"] == "service_healthy"
    # the init container's shell expands its own environment
    init_env = services[init]["environment"]
    bucket_made = re.sub(r"\$(\w+)", lambda m: init_env[m.group(1)], " ".join(services[init]["command"]))
    for name in MMQ_SERVICES:
        env = services[name]["environment"]
        url = urlsplit(env["MMQ_STORAGE_URL"])
        assert url.scheme == "s3" and f"local/{url.netloc}" in bucket_made.replace('"', "")
        endpoint = urlsplit(parse_qs(url.query)["endpoint_url"][0])
        assert endpoint.hostname == minio and endpoint.port == 9000
        # the MinIO root credentials are the workers' and the API's AWS credentials
        assert env["AWS_ACCESS_KEY_ID"] == services[minio]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == services[minio]["environment"]["MINIO_ROOT_PASSWORD"]
        assert services[name]["depends_on"][init]["condition"] == "service_completed_successfully"


def test_the_worker_stop_grace_period_outlasts_its_shutdown_grace(compose: dict):
    worker = compose["services"]["worker"]
    grace = float(worker["environment"]["MMQ_SHUTDOWN_GRACE_S"])
    stop = seconds(worker["stop_grace_period"])
    # compose kills after stop_grace_period: the worker needs its grace, then time to record what it left
    assert grace + 5 <= stop <= grace + 30, (grace, stop)


def test_the_simulator_is_opt_in_and_a_real_key_never_goes_to_it(compose: dict):
    services = compose["services"]
    simulator = services["simulator"]
    assert simulator["profiles"] == ["sim"]
    assert not simulator.get("env_file")  # the provider keys in .env stay out of the simulator
    for name, service in services.items():
        if name == "simulator":
            continue
        assert "profiles" not in service, name
        assert "simulator" not in (service.get("depends_on") or {}), name
        env = service.get("environment") or {}
        # .env holding only MMQ_OPENAI_API_KEY: the workers call the real provider, with no stand-in key
        assert "simulator" not in str(env.get("MMQ_OPENAI_BASE_URL", "")), name
        assert "MMQ_OPENAI_API_KEY" not in env, name
    assert compose["services"]["worker"]["environment"]["MMQ_OPENAI_BASE_URL"] == "https://api.openai.com/v1"
    # and with the simulator asked for in .env, the same file points the workers at it
    asked = interpolate(
        yaml.safe_load(COMPOSE.read_text()), {"MMQ_OPENAI_BASE_URL": "http://simulator:8090/v1"}
    )
    assert asked["services"]["worker"]["environment"]["MMQ_OPENAI_BASE_URL"] == "http://simulator:8090/v1"


def test_the_image_holds_the_core_and_the_extras_compose_needs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("mmq", "worker", "producer"):
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M), package
    default = re.search(r"^ARG MMQ_EXTRAS=(\S+)$", dockerfile, re.M)
    assert default is not None
    assert default.group(1) == "all" or "s3" in default.group(1).split(",")  # compose's store is S3
    assert 'pip install --no-cache-dir ".[${MMQ_EXTRAS}]"' in dockerfile


def test_env_example_documents_the_choices():
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^MMQ_OPENAI_API_KEY=", example, re.M)
    assert "--profile sim" in example and "# MMQ_OPENAI_BASE_URL=http://simulator:8090/v1" in example
