"""One JSON log line per job outcome, with the ids a log pipeline filters on (issue: arq's two plain
lines per job, no ids)."""

from __future__ import annotations

import json
import logging

import httpx

from mmq import logs
from producer.submit import BatchLine
from tests.conftest import chat_body, data_url, png_bytes
from worker.pipeline import run_job


def _line(i: int) -> BatchLine:
    body = chat_body(data_url(png_bytes((i, 2, 3))))
    return BatchLine(body=body, url="/v1/chat/completions", custom_id=str(i))


async def test_a_job_outcome_is_one_json_line_with_its_ids(make_runtime, capsys):
    answers = iter(
        [
            httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "A mug."}}]}),
            httpx.Response(400, json={"error": {"message": "bad model", "code": "model_not_found"}}),
        ]
    )
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        logs.configure(level="INFO", fmt="json")
        rt, producer = make_runtime(httpx.MockTransport(lambda request: next(answers)))
        batch = await producer.submit_batch([_line(0), _line(1)], tenant="acme")
        ids = [i async for chunk in rt.records.iter_batch_job_ids(batch.id) for i in chunk]
        for job_id in ids:
            await run_job({"mmq": rt}, job_id)
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    finally:
        logging.getLogger().handlers[:], level = saved
        logging.getLogger().setLevel(level)
    outcomes = {x["job_id"]: x for x in lines if x.get("job_id")}
    assert set(outcomes) == set(ids)  # one line each
    good, bad = (outcomes[i] for i in ids)
    assert good["status"] == "succeeded" and good["batch_id"] == batch.id and good["tenant"] == "acme"
    assert good["kind"] == "chat" and good["level"] == "INFO" and good["attempts"] == 1
    assert bad["status"] == "failed" and bad["error_type"] == "provider_error" and "bad model" in bad["error"]
