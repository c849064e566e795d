"""The import contract (pyproject's [tool.importlinter]) holds on the code, and it would catch a back-arrow:
the same contracts run on a small tree where the core imports the worker must fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_the_import_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_a_back_arrow_breaks_it(tmp_path: Path):
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    modules = {m for c in contracts["contracts"] for m in c.get("forbidden_modules", [])}
    # allowed to start a worker: `mmq worker` (producer.cli.processes) and the embedded `mmq run`
    starters = [rule.split(" -> ")[0] for c in contracts["contracts"] for rule in c.get("ignore_imports", [])]
    packages = {s.rpartition(".")[0].replace(".", "/") for s in starters}
    for package in ("mmq", "worker", "producer", "mmq/simulator", *sorted(packages)):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    for name in modules | {"worker.worker", *starters}:
        path = tmp_path / (name.replace(".", "/") + ".py")
        if not path.parent.joinpath("__init__.py").exists() or path.with_suffix("").is_dir():
            continue
        path.write_text("")
    for starter in starters:
        (tmp_path / (starter.replace(".", "/") + ".py")).write_text("import worker.worker\n")
    assert lint(tmp_path).returncode == 0
    (tmp_path / "mmq" / "records.py").write_text("import worker.pipeline\n")  # the core importing the worker
    (tmp_path / "worker" / "pipeline.py").write_text("")
    broken = lint(tmp_path)
    assert broken.returncode != 0 and "mmq.records -> worker.pipeline" in broken.stdout


def test_the_simulator_contract_names_every_module_of_the_engine():
    """A module added to the core must be added to the simulator's forbidden list, or the simulator could
    quietly start sharing the engine's code (and its bugs) instead of standing in for the providers."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [simulator] = [c for c in contracts if c.get("source_modules") == ["mmq.simulator"]]
    core = {
        f"mmq.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "mmq").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    } - {"mmq.simulator"}
    assert core <= set(simulator["forbidden_modules"]), sorted(core - set(simulator["forbidden_modules"]))
