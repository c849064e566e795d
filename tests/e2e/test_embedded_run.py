"""The README's first command: `mmq run examples/batch.jsonl` on the embedded defaults."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import wave
from pathlib import Path

from PIL import Image

from examples.make_examples import PRODUCTS
from mmq.simulator import colour_name
from tests.e2e.conftest import ROOT, free_port


def test_mmq_run_finishes_the_shipped_example_with_valid_files(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer.cli",
            "run",
            str(ROOT / "examples" / "batch.jsonl"),
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
            "--latency-ms",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["succeeded"] == 34 and summary["failed"] == 0
    assert "key for tenant 'local': mmq_" in proc.stderr

    lines = [json.loads(x) for x in Path(summary["output"]).read_text().splitlines()]
    assert len(lines) == 34 and all(x["response"]["status_code"] == 200 for x in lines)
    by_id = {x["custom_id"]: x["response"]["body"] for x in lines}
    for n, (kind, colour) in enumerate(PRODUCTS, start=1):
        caption = by_id[f"sku-{n:03d}-{kind}"]["choices"][0]["message"]["content"]
        assert f"{colour_name(colour)} subject" in caption, caption
    assert by_id["transcript-order-123"]["text"].startswith("Order one two three")

    files = sorted(Path(summary["files"]).iterdir())
    assert [f.suffix for f in files].count(".png") == 3 and [f.suffix for f in files].count(".wav") == 3
    for f in files:
        if f.suffix == ".png":
            assert Image.open(io.BytesIO(f.read_bytes())).size == (512, 512)
        else:
            with wave.open(str(f)) as w:
                assert w.getnframes() > 0
