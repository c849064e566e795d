"""`mmq.Client` against a real `mmq api` and worker: submit (lines or a JSONL file), wait, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mmq
from tests.conftest import chat_body, data_url, png_bytes
from tests.e2e.conftest import KEY_A, KEY_B


def lines(n: int, tag: str) -> list[dict]:
    return [
        {
            "custom_id": f"{tag}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body(data_url(png_bytes((30 * i, 60, 90))), prompt=f"{tag} {i}"),
        }
        for i in range(n)
    ]


def test_a_script_submits_waits_and_reads_results(api: str, tmp_path: Path):
    with mmq.Client(api, api_key=KEY_A) as client:
        batch = client.submit(lines(3, "list"), metadata={"source": "script"})
        assert batch.status is mmq.BatchStatus.in_progress and batch.counts.total == 3
        done = client.wait(batch.id, timeout_s=120, poll_s=0.2)
        assert done.ended and done.counts.succeeded == 3 and done.metadata == {"source": "script"}
        got = list(client.results(batch.id))
        assert [g["custom_id"] for g in got] == ["list-0", "list-1", "list-2"]
        assert all(g["response"]["status_code"] == 200 for g in got)
        # a finished batch: cancel and retry-failed change nothing, and say so
        assert client.cancel(batch.id).status is mmq.BatchStatus.completed
        assert client.retry_failed(batch.id).counts.succeeded == 3

        path = tmp_path / "in.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines(2, "file")) + "\n")
        from_file = client.wait(client.submit(path, priority="high").id, timeout_s=120, poll_s=0.2)
        assert from_file.counts.succeeded == 2

    with mmq.Client(api, api_key=KEY_B) as other, pytest.raises(mmq.MMQError) as refused:
        other.batch(batch.id)  # another tenant's batch does not exist for this key
    assert refused.value.status == 404
    with mmq.Client(api, api_key="wrong") as nobody, pytest.raises(mmq.MMQError) as anonymous:
        nobody.submit(lines(1, "x"))
    assert anonymous.value.status == 401
