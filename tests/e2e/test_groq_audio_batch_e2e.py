"""A night's recordings through Groq's batch API end to end: real Redis, a real worker process, the
simulator's Groq batch (audio lines carry the recording as a data URL); each transcript stored exactly
as a realtime one, at the batch price."""

from __future__ import annotations

import base64
import json
import time
from decimal import Decimal

from mmq.contract import JobStatus
from mmq.pricing import cost_of
from mmq.simulator import encode_speech_wav
from producer.submit import BatchLine
from tests.e2e.conftest import wait_batch
from tests.e2e.test_batch_tier_e2e import (  # noqa: F401 (deployment: the fixture)
    deployment,
    harvested,
    jobs_of,
    sim_stats,
)

MODEL = "whisper-large-v3-turbo"
CONFIG = {"strategy": {"mode": "single"}, "targets": [{"provider": "groq", "virtual_key": "sim-groq"}]}
SAID = ["the blue chair ships today", "our order left the dock", "twelve boxes of lamps arrived"]


def recordings() -> list[BatchLine]:
    lines = []
    for i, words in enumerate(SAID):
        wav = "data:audio/wav;base64," + base64.b64encode(encode_speech_wav(words)).decode()
        body = {"model": MODEL, "file": wav, "response_format": "text" if i == 1 else "json"}
        lines.append(BatchLine(body=body, url="/v1/audio/transcriptions", custom_id=f"rec-{i}"))
    return lines


async def test_auto_transcribes_recordings_through_groq_batch_at_half_price(deployment, tmp_path):  # noqa: F811
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"sim-groq": {"api_key": "gsk-sim", "base_url": base.removesuffix("/v1")}}))
    deployment.worker({"MMQ_SECRETS_FILE": str(secrets)})
    batch = await producer.submit_batch(
        recordings(), tenant="acme", cache=False, config=CONFIG, deadline=time.time() + 7200
    )
    done = await wait_batch(records, batch.id, timeout=180)
    assert done.status.value == "completed" and done.counts.succeeded == len(SAID), done.counts
    made = await harvested(packs, batch.id, timeout=120)
    assert [(p.provider, p.kind, p.state) for p in made] == [("groq", "transcription", "harvested")]
    jobs = {j.custom_id: j for j in await jobs_of(records, batch.id)}
    for i, words in enumerate(SAID):
        job = jobs[f"rec-{i}"]
        assert job.status is JobStatus.succeeded, (job.custom_id, job.error)
        assert job.attempts[-1].tier == "batch"
        assert job.attempts[-1].provider_batch == made[0].provider_batch_id
        stored = (await producer.storage.get(job.result.body_key)).decode()
        assert words.split()[1] in stored, (job.custom_id, stored)
        assert job.cost.tier == "batch" and job.cost.missing is None
        # billed per second of audio (10 s at least): reported in the JSON answers; measured from the
        # recording for the text one, whose answer says no duration
        seconds = (job.usage or {}).get("duration") or 10
        realtime = cost_of("groq", MODEL, "transcription", {"seconds": seconds}).amount
        assert realtime > 0 and abs(Decimal(job.cost.usd) - realtime / 2) < Decimal("1e-24"), job.cost
        assert job.cost.saved_micro_usd == job.cost.micro_usd > 0
    stats = sim_stats(base)
    assert stats["batches_created"] == {"groq": 1} and stats["batch_lines_billed"]["groq"] == len(SAID)
    assert stats["by_path"].get("/openai/v1/audio/transcriptions", 0) == 0  # none went realtime
