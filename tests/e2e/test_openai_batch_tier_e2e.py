"""The stock `openai` SDK's batch on mmq's batch tier: a /v1 batch whose lines go through the provider's
own batch API (the simulator's, with a compressed clock) and whose Batch object says so in its `mmq`
member. Real `mmq api` and worker processes, real Redis, all on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from openai import OpenAI

from producer.auth import hash_key
from tests.e2e.conftest import _spawn, free_port, wait_http
from tests.e2e.test_batch_tier_e2e import chat_lines, deployment, sim_stats  # noqa: F401 (the fixture)
from tests.e2e.test_openai_sdk_e2e import jsonl, read_lines, req, upload, wait

KEY = "mmq_sdk_batch_tier_key"


def test_a_v1_batch_on_the_batch_tier_reports_its_provider_batches(deployment, tmp_path: Path):  # noqa: F811
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker()
    port = free_port()
    env = {
        "MMQ_REDIS_URL": deployment.redis_url,
        "MMQ_STORAGE_URL": deployment.storage_url,
        "MMQ_API_KEYS": json.dumps({hash_key(KEY): "acme"}),
    }
    server = _spawn(["api", "--port", str(port)], env, tmp_path / "api.log")
    deployment.procs.append(server)
    wait_http(f"http://127.0.0.1:{port}/health", server, tmp_path / "api.log")
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    lines = [req(line.custom_id, "/v1/chat/completions", line.body) for line in chat_lines(5, "sdk")]
    f = upload(client, jsonl(*lines))
    created = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"tier": "batch"},
    )
    assert created.model_extra["mmq"]["tier"] == "batch"
    batch = wait(client, created.id, timeout=120)
    assert batch.status == "completed" and batch.request_counts.completed == 5, batch
    mmq = batch.model_extra["mmq"]
    assert mmq["request_counts"] == {
        "provider_batch": 0,
        "realtime": 0,
        "done": 5,
        "budget": 0,
        "paid_twice": 0,
    }
    made = mmq["provider_batches"]
    assert made and all(p["provider"] == "openai" and p["id"] for p in made)
    assert sum(p["lines"] for p in made) == 5
    assert float(mmq["saved_usd"]) > 0 and float(mmq["spent_usd"]) > 0
    out = read_lines(client, batch.output_file_id)
    assert sorted(out) == sorted(line["custom_id"] for line in lines)
    assert all(x["response"]["status_code"] == 200 for x in out.values())
    assert sim_stats(base)["by_path"].get("/v1/chat/completions", 0) == 0  # no line went realtime
