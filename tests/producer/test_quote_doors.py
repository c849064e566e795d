"""`mmq quote` and the HTTP dry run: a mixed batch read from a real JSONL file (images as data: URLs,
a WAV beside it) quotes exactly the sum of the documented rules, computed here independently from
../shared/reference/pricing.md; unknown models are listed as "no price for …" beside the priced rest;
lines a submit refuses are counted, not priced; the routing config's first target is the one priced."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import wave
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmq.connections import embedded_redis
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.api import create_app
from producer.auth import hash_key
from producer.cli import main

M = Decimal(1_000_000)
KEY = "mmq_unit_quote_key"
SYSTEM = "You caption product photos."
ASK = "Describe these three photos."
PROMPT = "a ceramic teapot on a wooden table"
SPOKEN = "Welcome to the spring catalog."
# (width, height, detail) of the chat line's three images; None: no detail given (auto)
IMAGES = [(1600, 1200, "high"), (2048, 4096, None), (800, 600, "low")]


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buf, format="PNG")
    return buf.getvalue()


def wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def line(custom_id: str, url: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def image_part(width: int, height: int, detail: str | None) -> dict:
    image: dict = {"url": data_url(png(width, height), "image/png")}
    if detail:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def mixed_lines() -> list[dict]:
    chat = {
        "model": "gpt-4o",
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": ASK}, *(image_part(*i) for i in IMAGES)]},
        ],
    }
    image = {"model": "gpt-image-1", "prompt": PROMPT, "size": "1024x1024", "quality": "high", "n": 2}
    return [
        line("chat", "/v1/chat/completions", chat),
        line("art", "/v1/images/generations", image),
        line("tts", "/v1/audio/speech", {"model": "tts-1", "input": SPOKEN, "voice": "alloy"}),
        line("rec", "/v1/audio/transcriptions", {"model": "whisper-1", "file": "rec.wav"}),  # beside the file
        line(
            "tr",
            "/v1/audio/translations",
            {"model": "whisper-1", "file": data_url(wav(1.5), "audio/wav")},
        ),
    ]


def write_jsonl(folder: Path, lines: list[dict | str]) -> Path:
    (folder / "rec.wav").write_bytes(wav(2.5))
    path = folder / "batch.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


# ------------------------------------------------------------------ the rules, independently of mmq
def openai_tile_tokens(width: int, height: int, detail: str | None) -> int:
    """pricing.md §1.1, OpenAI tile scheme (gpt-4o: base 85, 170 per tile): `low` is the base; otherwise
    fit within 2048x2048 keeping the aspect, scale so the shortest side is 768, count 512-px tiles:
    85 + 170 x tiles. `auto` may pick high: quoted as high (the most it can cost)."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    fit = min(1.0, 2048 / max(w, h))
    w, h = w * fit, h * fit
    short = min(1.0, 768 / min(w, h))
    w, h = w * short, h * short
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def expected() -> dict[str, Decimal]:
    # chat, gpt-4o $2.50/M in, $10/M out (pricing.md §6); text: mmq's documented offline estimate
    # (mmq/pricing/rules.py: ceil(chars / 4) per text, 3 per message, 3 for the reply)
    text = 3 + math.ceil(len(SYSTEM) / 4) + 3 + math.ceil(len(ASK) / 4) + 3
    images = sum(openai_tile_tokens(*i) for i in IMAGES)
    assert [openai_tile_tokens(*i) for i in IMAGES] == [765, 1105, 85]  # 4 tiles, 6 tiles, low
    chat_low = (text + images) * Decimal("2.50") / M
    chat_high = chat_low + 300 * Decimal("10.00") / M  # the output bound: max_tokens
    # gpt-image-1 1024x1024 high: 4160 image-out tokens at $40/M per image, the prompt at $5/M (§2)
    image = 2 * 4160 * Decimal(40) / M + math.ceil(len(PROMPT) / 4) * Decimal(5) / M
    speech = len(SPOKEN) * Decimal(15) / M  # tts-1: $15 per 1M characters (§3)
    stt = (
        (Decimal("2.5") + Decimal("1.5")) * Decimal("0.006") / 60
    )  # whisper-1 $0.006/min, by the second (§4)
    realtime_only = speech + stt  # OpenAI's batch API takes chat and images (§5.1 at half price)
    return {
        "text": Decimal(text),
        "images": Decimal(images),
        "low": chat_low + image + realtime_only,
        "high": chat_high + image + realtime_only,
        "batch_low": (chat_low + image) / 2 + realtime_only,
        "batch_high": (chat_high + image) / 2 + realtime_only,
    }


def quote_json(capsys, *argv: str) -> dict:
    assert main(["quote", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_mixed_batch_quotes_the_sum_of_the_documented_rules(tmp_path, capsys):
    path = write_jsonl(tmp_path, mixed_lines())
    q = quote_json(capsys, str(path))
    want = expected()
    assert (q["jobs"], q["priced_jobs"], q["missing"], q["invalid_lines"]) == (5, 5, {}, 0)
    assert Decimal(q["low_usd"]) == want["low"] and Decimal(q["high_usd"]) == want["high"]
    assert Decimal(q["batch_low_usd"]) == want["batch_low"]
    assert Decimal(q["batch_high_usd"]) == want["batch_high"]
    groups = {(g["kind"], g["model"]): g for g in q["groups"]}
    chat = groups["chat", "gpt-4o"]
    assert (chat["text_tokens"], chat["image_tokens"]) == (want["text"], want["images"])
    assert (chat["images_in"], chat["output_bound"], chat["batch_tier"]) == (3, 300, True)
    assert groups["transcription", "whisper-1"]["audio_seconds"] == "2.5"
    assert groups["translation", "whisper-1"]["audio_seconds"] == "1.5"
    assert groups["speech", "tts-1"]["batch_tier"] is False

    # the human view: one row per kind/provider/model, the batch tier and the totals
    assert main(["quote", str(path)]) == 0
    out = capsys.readouterr().out
    assert "openai/gpt-4o" in out and "openai/whisper-1" in out and "realtime only" in out
    assert "total: 5 of 5 job(s) priced" in out and "on the batch tier:" in out


def test_max_side_quotes_the_downscaled_image(tmp_path, capsys):
    body = {
        "model": "gpt-4o",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [image_part(2048, 4096, "high")]}],
    }
    path = write_jsonl(tmp_path, [line("big", "/v1/chat/completions", body)])
    q = quote_json(capsys, str(path), "--max-side", "1024")
    # the worker sends 512x1024: no scaling by the rule, 1 x 2 tiles
    assert q["groups"][0]["image_tokens"] == openai_tile_tokens(512, 1024, "high") == 85 + 2 * 170


def test_unknown_models_say_no_price_and_the_rest_is_still_quoted(tmp_path, capsys):
    hi = [{"role": "user", "content": "hi"}]
    lines = [
        line("known", "/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 10, "messages": hi}),
        line("new", "/v1/chat/completions", {"model": "gpt-9-ears", "max_tokens": 10, "messages": hi}),
        line("tts", "/v1/audio/speech", {"model": "tts-1", "input": SPOKEN, "voice": "alloy"}),
        line("art", "/v1/images/generations", {"prompt": PROMPT, "n": 2}),  # the provider's default model
    ]
    path = write_jsonl(tmp_path, lines)
    q = quote_json(capsys, str(path))
    assert (q["jobs"], q["priced_jobs"]) == (4, 2)
    assert q["missing"] == {
        "no price for openai/gpt-9-ears": 1,
        "no price for openai's default model (name a model to price it)": 1,
    }
    assert next(g for g in q["groups"] if g["kind"] == "image")["images_out"] == 2
    assert Decimal(q["low_usd"]) > 0
    assert {g["model"] for g in q["groups"]} == {"gpt-4o-mini", "gpt-9-ears", "tts-1", "(default)"}
    assert main(["quote", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no price for openai/gpt-9-ears: 1 job(s) not priced" in out
    assert "openai/gpt-4o-mini" in out and "openai/tts-1" in out and "total: 2 of 4 job(s) priced" in out


def test_lines_a_submit_refuses_are_counted_with_the_submit_message(tmp_path, capsys):
    lines = [
        "{broken json",
        line("remote", "/v1/audio/transcriptions", {"model": "whisper-1", "file": "https://x/a.wav"}),
        line(
            "not-audio",
            "/v1/audio/transcriptions",
            {"model": "whisper-1", "file": data_url(png(4, 4), "audio/wav")},
        ),
        line("ok", "/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy"}),
    ]
    q = quote_json(capsys, str(write_jsonl(tmp_path, lines)))
    assert (q["jobs"], q["invalid_lines"]) == (1, 3)
    errors = {r["line"]: r["error"] for r in q["invalid"]}
    assert errors[1].startswith("not valid JSON")
    assert errors[2] == "file: remote audio URLs are not supported; send a data: URL or upload the file"
    assert "bytes look like image/png" in errors[3]


def test_the_routing_configs_first_target_is_priced(tmp_path, capsys):
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "anthropic", "override_params": {"model": "claude-sonnet-4-5"}},
            {"provider": "openai"},
        ],
    }
    (tmp_path / "route.json").write_text(json.dumps(config))
    body = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    path = write_jsonl(tmp_path, [line("a", "/v1/chat/completions", body)])
    q = quote_json(capsys, str(path), "--config", str(tmp_path / "route.json"))
    [group] = q["groups"]
    assert (group["provider"], group["model"], group["priced_jobs"]) == ("anthropic", "claude-sonnet-4-5", 1)
    # $3/M in, $15/M out (pricing.md §6): 1 message + "hi" + the reply = 7 tokens; 100 out at most
    assert Decimal(group["high_usd"]) == 7 * Decimal(3) / M + 100 * Decimal(15) / M


# ------------------------------------------------------------------------------ the HTTP dry run
@pytest.fixture
async def api(tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    redis = embedded_redis()
    settings = Settings(
        redis_url=None, storage_url=f"file://{tmp_path / 'store'}", api_keys={hash_key(KEY): "tenant-a"}
    )
    app = create_app(settings, redis=redis, storage=open_storage(settings.storage_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        headers = {"authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://mmq", headers=headers) as c:
            yield c, settings
    await redis.aclose()


async def test_the_http_dry_run_answers_the_clis_quote(api, tmp_path, capsys):
    client, _ = api
    lines = [x for x in mixed_lines() if x["custom_id"] != "rec"]  # the API never reads the server's disk
    want = await asyncio.to_thread(quote_json, capsys, str(write_jsonl(tmp_path, lines)))
    r = await client.post("/api/batches", params={"dry_run": "true"}, json={"requests": lines})
    assert r.status_code == 200, r.text
    assert r.json() == want
    jsonl = "".join(json.dumps(x) + "\n" for x in lines)
    r = await client.post(
        "/api/batches?dry_run=true&team=a", content=jsonl, headers={"content-type": "application/jsonl"}
    )
    assert r.status_code == 200 and r.json() == want
    local = await client.post("/api/batches?dry_run=true", json={"requests": mixed_lines()})
    assert local.json()["invalid"][0]["error"] == "file: must be a data: URL of the audio"


async def test_the_http_dry_run_with_a_bad_price_file_is_a_500_without_the_path(api, tmp_path):
    client, settings = api
    (tmp_path / "bad.yaml").write_text("providers: [\n")
    settings.prices_file = tmp_path / "bad.yaml"
    r = await client.post("/api/batches?dry_run=true", json={"requests": mixed_lines()[:1]})
    assert r.status_code == 500 and "MMQ_PRICES_FILE" in r.text and "bad.yaml" not in r.text
