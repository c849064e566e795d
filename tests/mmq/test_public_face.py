"""The public face: `import mmq` offers a small, curated set of names; anything else is internal."""

from __future__ import annotations

import subprocess
import sys

import mmq

PUBLIC = {"Batch", "BatchCounts", "BatchStatus", "Client", "JobStatus", "Kind", "MMQError", "Settings"}


def test_the_public_names_are_the_curated_set():
    assert set(mmq.__all__) == PUBLIC
    assert all(hasattr(mmq, name) for name in PUBLIC)
    public_modules = {name for name in vars(mmq) if not name.startswith("_")} - PUBLIC
    # submodules may be attributes once imported, but nothing else leaks
    assert all(getattr(mmq, name).__name__.startswith("mmq.") for name in public_modules)


def test_importing_mmq_loads_no_adapter_worker_or_front():
    roots = "('worker', 'producer', 'botocore')"
    code = f"import sys, mmq; print(sorted(m for m in sys.modules if m.split('.')[0] in {roots}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
