"""Packaging (issue 14, item 9): botocore, obstore and fakeredis+lupa are extras, not base dependencies.

The base install imports and runs the worker, the API and the CLI; a feature used without its extra stops
with one message naming the extra. The import checks run in a fresh interpreter whose importer refuses
the optional packages, as a base install would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from mmq.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# (not opentelemetry: recent FastAPI releases import opentelemetry-api themselves; mmq/tracing.py is
# off without the `otel` extra's SDK)
OPTIONAL = ("botocore", "obstore", "fakeredis", "lupa", "playwright")

# installed as sitecustomize: every later import of an optional package fails as if it were not installed
BLOCKER = f"""
import sys

BLOCKED = {OPTIONAL!r}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMQ_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    return env


def run_python(code: str, env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_optional_packages_are_extras_not_base_dependencies():
    project = PYPROJECT["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not base & {"botocore", "obstore", "fakeredis", "lupa", "playwright", "moto", "opentelemetry-api"}
    assert {_name(r) for r in extras["s3"]} == {"obstore"}
    assert {_name(r) for r in extras["bedrock"]} == {"botocore"}
    assert [r for r in extras["embedded"] if _name(r) == "fakeredis"] == ["fakeredis[lua]>=2.26,<3"]
    # mmq.extras names the same packages the extras hold (the messages point at the right extra)
    assert {"s3", "bedrock", "embedded"} <= set(EXTRAS) and set(EXTRAS) | {"all", "test"} == set(extras)
    # `all` is every extra but the test one
    (everything,) = extras["all"]
    assert everything.startswith("mmq[") and set(everything[4:-1].split(",")) == set(EXTRAS)
    # CI installs `.[test]`: it must hold every extra, so no test skips for want of one
    assert "mmq[all]" in extras["test"]


def test_the_base_install_imports_and_each_feature_names_its_extra(base_env: dict[str, str]):
    done = run_python(
        """
        import asyncio, sys

        import mmq, mmq.simulator, producer.api, producer.cli, producer.embedded, worker.worker
        from mmq.extras import MissingExtra
        from mmq.settings import Settings
        from mmq.storage import open_storage
        from producer.api import create_app
        from worker.providers.base import Target
        from worker.providers.bedrock import auth

        for name in ("botocore", "obstore", "fakeredis", "lupa", "playwright"):
            assert name not in sys.modules, name
        create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
        mmq.simulator.create_app()
        open_storage("file://./nowhere-made")  # a local store needs nothing

        try:
            open_storage("s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000")
        except MissingExtra as e:
            print("S3:", e)
        try:
            from mmq.connections import embedded_redis
            embedded_redis()
        except MissingExtra as e:
            print("EMBEDDED:", e)
        # Bedrock: an API key needs nothing; SigV4 fails the job's target with the extra named
        bearer = Target(name="br", provider="bedrock", base_url=None, api_key="brk-1",
                        headers={"x-mmq-aws-auth": "bearer"})
        assert auth.request_headers(bearer, "https://x/model/m/converse", b"{}", "bedrock")["authorization"]
        sigv4 = Target(name="br", provider="bedrock", base_url=None, api_key="AKID:secret")
        try:
            auth.request_headers(sigv4, "https://x/model/m/converse", b"{}", "bedrock")
        except Exception as e:
            print("BEDROCK:", type(e).__name__, getattr(e, "code", None), e)
        """,
        base_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["S3"].startswith("MMQ_STORAGE_URL=s3://bucket/prefix")
    assert "install mmq[s3]" in lines["S3"] and "obstore" in lines["S3"]
    assert "mmq run" in lines["EMBEDDED"] and "install mmq[embedded]" in lines["EMBEDDED"]
    assert lines["BEDROCK"].startswith("ProviderError target_misconfigured")
    assert "install mmq[bedrock]" in lines["BEDROCK"]


def test_the_simulator_without_botocore_names_the_extra(base_env: dict[str, str]):
    done = run_python(
        """
        import time

        from starlette.requests import Request

        from mmq.simulator.bedrock import BedrockError, verify_sigv4

        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = {
            "host": "sim",
            "x-amz-date": amz_date,
            "authorization": f"AWS4-HMAC-SHA256 Credential=AKIDSIM/{amz_date[:8]}/us-east-1/bedrock/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        }
        scope = {"type": "http", "method": "POST", "path": "/model/m/converse", "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        try:
            verify_sigv4(Request(scope), b"{}")
        except BedrockError as e:
            print(e.status, e.message)
        """,
        base_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("500 ") and "install mmq[bedrock]" in done.stdout


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["run", str(ROOT / "examples" / "batch.jsonl"), "--port", "0"], "embedded"),
        (["status", "batch_nope"], "s3"),
    ],
)
def test_the_cli_without_an_extra_prints_one_line_naming_it(
    base_env: dict[str, str], tmp_path: Path, argv: list[str], extra: str
):
    env = {
        **base_env,
        "MMQ_REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: the store is opened first
        "MMQ_STORAGE_URL": "s3://bucket/prefix",
    }
    if extra == "embedded":
        env.pop("MMQ_REDIS_URL")
        env["MMQ_STORAGE_URL"] = str(tmp_path / "store")
    done = run_python("from producer.cli import run; run()", env, *argv, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("mmq: ") and f"install mmq[{extra}]" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
