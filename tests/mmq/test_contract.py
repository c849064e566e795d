from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmq.request_models import Kind, kind_for_url, parse_request
from tests.conftest import chat_body


def test_the_batch_url_picks_the_kind():
    assert kind_for_url("/v1/chat/completions") is Kind.chat
    assert kind_for_url("/v1/images/generations") is Kind.image
    assert kind_for_url("/v1/audio/speech") is Kind.speech
    assert kind_for_url("/v1/audio/transcriptions") is Kind.transcription
    assert kind_for_url("/v1/audio/translations") is Kind.translation
    assert kind_for_url("/chat/completions") is Kind.chat  # without the version prefix
    with pytest.raises(ValueError, match="unsupported url"):
        kind_for_url("/v1/embeddings")


def test_chat_accepts_openai_image_parts_and_keeps_unknown_params():
    body = chat_body("https://example.com/a.png") | {"temperature": 0.2, "seed": 7}
    req = parse_request(Kind.chat, body)
    assert req.messages[0].content[1].image_url.detail == "auto"
    assert req.model_dump()["seed"] == 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        (chat_body("ftp://example.com/a.png"), "image_url.url"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "image_url"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]}, "type"),
    ],
)
def test_malformed_chat_requests_name_the_field(body, field):
    with pytest.raises(ValidationError) as e:
        parse_request(Kind.chat, body)
    assert field in str(e.value)


def test_gs_uris_are_accepted_in_chat_media_for_vertex():
    gs_pdf = {"type": "file", "file": {"file_data": "gs://docs/q3/report.pdf", "filename": "report.pdf"}}
    body = chat_body("gs://bucket/shots/cat.png")
    body["messages"][0]["content"].append(gs_pdf)
    req = parse_request(Kind.chat, body)
    assert req.messages[0].content[1].image_url.url == "gs://bucket/shots/cat.png"
    assert req.messages[0].content[2].file.file_data == "gs://docs/q3/report.pdf"


@pytest.mark.parametrize("url", ["gs://", "gs://bucket", "gs://bucket/", "gs:///cat.png", "gs://b/dir/"])
def test_a_gs_uri_without_bucket_and_object_is_refused_naming_the_field(url):
    with pytest.raises(ValidationError) as e:
        parse_request(Kind.chat, chat_body(url))
    assert "image_url.url: a gs:// URI names a bucket and an object" in str(e.value)


def test_the_refusal_names_every_accepted_scheme():
    with pytest.raises(ValidationError) as e:
        parse_request(Kind.chat, chat_body("s3://bucket/cat.png"))
    assert "an http(s) URL, a data: URL or a gs:// URI (Vertex AI targets only)" in str(e.value)


def test_image_speech_and_audio_shapes():
    assert parse_request(Kind.image, {"prompt": "a cat", "size": "512x512"}).n == 1
    with pytest.raises(ValidationError):
        parse_request(Kind.image, {"prompt": "a cat", "size": "big"})
    with pytest.raises(ValidationError):
        parse_request(Kind.image, {"prompt": "a cat", "n": 11})
    assert (
        parse_request(Kind.speech, {"model": "tts-1", "input": "hi", "voice": "alloy"}).response_format
        == "mp3"
    )
    with pytest.raises(ValidationError):
        parse_request(Kind.speech, {"model": "tts-1", "input": "x" * 4097, "voice": "alloy"})
    t = parse_request(
        Kind.transcription, {"model": "whisper-1", "file": "a.wav", "timestamp_granularities": ["word"]}
    )
    assert t.response_format == "json"
    with pytest.raises(ValidationError):
        parse_request(Kind.translation, {"model": "whisper-1"})
