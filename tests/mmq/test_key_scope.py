"""The producer's cache keys (mmq.cache.KeyScope: a batch's shared part serialised once, a request copied
without a JSON round trip) are `cache_key`'s, byte for byte, whatever the request, level and options: a
worker keying the same request must find the producer's entry."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from mmq.cache import KeyScope, cache_key
from mmq.contract import CacheLevel, CacheOptions
from mmq.fingerprint import Fingerprints
from mmq.request_models import BLOB_SCHEME, Kind, dump_request, parse_request
from mmq.storage import blob_key
from tests.conftest import chat_body, data_url, png_bytes

PNG = png_bytes((10, 120, 30))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)
STORED = BLOB_SCHEME + blob_key(hashlib.sha256(PNG).hexdigest(), "image/png")
CONDITIONAL = {
    "strategy": {"mode": "conditional", "conditions": [], "default": "x"},
    "targets": [{"name": "x", "provider": "openai"}],
}

REQUESTS: list[tuple[Kind, dict]] = [
    (Kind.chat, {"model": "m", "messages": [{"role": "user", "content": "Write a tagline for product 7."}]}),
    (Kind.chat, {"model": "m", "messages": [{"role": "user", "content": 'é ü 😀 \u2028 \x01 "q" \\'}]}),
    (
        Kind.chat,
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief.", "name": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}], "x-extra": {"b": [1, None]}},
            ],
            "temperature": 1,  # a spelled-out default
            "top_p": 0.5,
            "n": 1,
            "max_tokens": 40,
            "user": "u-1",  # output-neutral
            "response_format": {"type": "json_schema", "json_schema": {"z": 1, "a": [1e-7, 1e16, 0.1]}},
            "logit_bias": {"50256": -100},
            "seed": 12345678901234567890,
        },
    ),
    (Kind.chat, chat_body(data_url(PNG))),
    (Kind.chat, chat_body(STORED)),
    (Kind.chat, chat_body("https://example.com/a.png")),  # no key at submit: the worker's to make
    (
        Kind.chat,
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": STORED}},
                        {"type": "file", "file": {"file_data": data_url(b"%PDF-1.4 x", "application/pdf")}},
                        {
                            "type": "file",
                            "file": {
                                "file_data": data_url(b"%PDF-1.4 y", "application/pdf"),
                                "filename": "y.pdf",
                            },
                        },
                    ],
                }
            ],
        },
    ),
    (Kind.image, {"prompt": "a red kettle", "n": 1, "response_format": "b64_json", "size": "1024x1024"}),
    (Kind.speech, {"model": "tts-1", "input": "hello", "voice": "alloy", "speed": 1.0}),
    (Kind.transcription, {"model": "whisper-1", "file": data_url(WAV, "audio/wav"), "filename": "a.wav"}),
    (Kind.translation, {"model": "whisper-1", "file": data_url(WAV, "audio/wav"), "temperature": 0}),
]


async def _load(ref: str) -> bytes | None:
    return PNG if ref == STORED else None


def _scope_args(tenant: str, config: dict | None, metadata: dict, media: dict | None) -> dict:
    return {"tenant": tenant, "config": config, "metadata": metadata, "media": media}


@pytest.mark.parametrize(("kind", "body"), REQUESTS)
@pytest.mark.parametrize("level", list(CacheLevel))
@pytest.mark.parametrize(
    "scope",
    [
        _scope_args("t", None, {}, None),
        _scope_args("acme", {"provider": "openai"}, {}, {"max_side": 512}),
        _scope_args("acme", CONDITIONAL, {"tier": "gold", "n": 2}, None),
    ],
)
async def test_a_batch_key_is_cache_keys_key(kind, body, level, scope):
    request = dump_request(parse_request(kind, body))  # as the producer keys it: validated and dumped
    before = copy.deepcopy(request)
    options = CacheOptions(level=level)
    fingerprints = Fingerprints(level, _load)
    expected = await cache_key(kind, request, **scope, options=options, fingerprint=fingerprints)
    got = await KeyScope(**scope).key(kind, request, options, fingerprints)
    assert got == expected
    assert request == before  # the request the job record keeps is not touched
    if kind is Kind.chat and "image_url" not in json.dumps(body) and '"file"' not in json.dumps(body):
        # the producer's shortcut for a chat it knows has no media part
        assert await KeyScope(**scope).key(kind, request, options, fingerprints, media=False) == expected
