"""S3Storage against a real S3-compatible server (moto, started once for this module), and a contract
test that runs the same assertions on LocalStorage and S3Storage."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from mmq.storage import BlobNotFound, LocalStorage, Storage, StorageKeyError, open_storage, put_blob
from mmq.storage import s3 as storage_s3
from mmq.storage.s3 import S3Location, S3Storage, S3UrlError
from tests.conftest import png_bytes
from tests.s3server import DUMMY_ENV, S3Server, start_s3_server

BUCKET = "mmq-test"
BAD_KEYS = ["../etc/passwd", "a/../../b", "/abs", "a//b", "", "a/./b", "a\\b", "a/", "x" * 1025]
# variables that would steer obstore somewhere other than the test server
_FOREIGN_AWS_ENV = (
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AWS_PROFILE",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    # dummy credentials in the environment, the only place S3Storage takes them from; with them set,
    # obstore never falls back to instance-metadata lookups
    with pytest.MonkeyPatch.context() as mp:
        for name in _FOREIGN_AWS_ENV:
            mp.delenv(name, raising=False)
        for name, value in DUMMY_ENV.items():
            mp.setenv(name, value)
        server = start_s3_server()
        try:
            server.make_bucket(BUCKET)
            yield server
        finally:
            server.stop()


def fresh_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def s3_storage(s3_server: S3Server) -> S3Storage:
    return S3Storage.from_url(s3_server.storage_url(BUCKET, fresh_prefix()))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3_server")
    return open_storage(server.storage_url(BUCKET, fresh_prefix()))


async def collect(storage: Storage, key: str, chunk_size: int) -> list[bytes]:
    return [chunk async for chunk in storage.stream(key, chunk_size)]


# ---- contract: both backends, same assertions -------------------------------------------------------


async def test_contract_round_trip(backend: Storage):
    key = "results/tenant_a/batch-1/out.jsonl"
    assert not await backend.exists(key)
    await backend.put(key, b"first")
    assert await backend.exists(key)
    assert await backend.get(key) == b"first"
    await backend.put(key, b"second, longer")  # overwrite replaces the whole object
    assert await backend.get(key) == b"second, longer"
    await backend.put("empty", b"")
    assert await backend.exists("empty") and await backend.get("empty") == b""
    await backend.delete(key)
    assert not await backend.exists(key)
    await backend.delete(key)  # deleting a missing key is fine


async def test_contract_missing_keys(backend: Storage):
    with pytest.raises(BlobNotFound) as e:
        await backend.get("blobs/nope")
    assert e.value.args == ("blobs/nope",)
    with pytest.raises(BlobNotFound):
        await collect(backend, "blobs/nope", 1024)
    assert not await backend.exists("blobs/nope")
    await backend.delete("blobs/nope")


async def test_contract_stream_chunks(backend: Storage):
    data = os.urandom(200_000)
    await backend.put("big.bin", data)
    chunks = await collect(backend, "big.bin", 65536)
    assert [len(c) for c in chunks] == [65536, 65536, 65536, 200_000 - 3 * 65536]
    assert b"".join(chunks) == data
    assert await collect(backend, "big.bin", 10**6) == [data]
    await backend.put("empty", b"")
    assert b"".join(await collect(backend, "empty", 10)) == b""


async def test_contract_put_blob_is_content_addressed(backend: Storage):
    data = png_bytes((9, 9, 9))
    k1 = await put_blob(backend, data, "image/png")
    k2 = await put_blob(backend, data, "image/png")
    assert k1 == k2 and k1.startswith("blobs/sha256/") and k1.endswith(".png")
    assert await backend.get(k1) == data
    other = await put_blob(backend, png_bytes((1, 1, 1)), "image/png")
    assert other != k1


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_contract_bad_keys_refused(backend: Storage, key: str):
    with pytest.raises(StorageKeyError):
        await backend.put(key, b"x")
    with pytest.raises(StorageKeyError):
        await backend.get(key)
    with pytest.raises(StorageKeyError):
        await backend.exists(key)
    with pytest.raises(StorageKeyError):
        await backend.delete(key)
    with pytest.raises(StorageKeyError):
        await collect(backend, key, 1024)


# ---- S3 specifics against the server ----------------------------------------------------------------


async def test_s3_large_object_streams_in_chunks(s3_storage: S3Storage):
    data = os.urandom(6 * 1024 * 1024 + 123)  # over 5 MB: obstore uploads it multipart
    await s3_storage.put("blobs/large.bin", data)
    assert await s3_storage.get("blobs/large.bin") == data
    chunk = 1024 * 1024
    chunks = await collect(s3_storage, "blobs/large.bin", chunk)
    assert [len(c) for c in chunks] == [chunk] * 6 + [123]
    assert b"".join(chunks) == data


async def test_s3_objects_land_under_the_prefix(s3_server: S3Server):
    prefix = fresh_prefix()
    storage = S3Storage.from_url(s3_server.storage_url(BUCKET, f"{prefix}/deep"))
    key = await put_blob(storage, b"abc", "text/plain")
    await put_blob(storage, b"abc", "text/plain")  # same bytes again: still one object
    assert s3_server.list_keys(BUCKET, prefix) == [f"{prefix}/deep/{key}"]


async def test_s3_prefixes_are_isolated(s3_server: S3Server):
    a = S3Storage.from_url(s3_server.storage_url(BUCKET, fresh_prefix()))
    b = S3Storage.from_url(s3_server.storage_url(BUCKET, fresh_prefix()))
    await a.put("shared/name.txt", b"from a")
    assert not await b.exists("shared/name.txt")
    with pytest.raises(BlobNotFound):
        await b.get("shared/name.txt")
    await b.delete("shared/name.txt")  # b deleting "its" key leaves a's object alone
    assert await a.get("shared/name.txt") == b"from a"
    await b.put("shared/name.txt", b"from b")
    assert await a.get("shared/name.txt") == b"from a"
    assert await b.get("shared/name.txt") == b"from b"


async def test_s3_bucket_root_without_prefix(s3_server: S3Server):
    prefix = fresh_prefix()
    root = S3Storage.from_url(s3_server.storage_url(BUCKET))
    inner = S3Storage.from_url(s3_server.storage_url(BUCKET, prefix))
    await inner.put("k", b"v")
    assert await root.get(f"{prefix}/k") == b"v"  # the prefix is a plain key prefix, nothing more


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_s3_bad_keys_refused_before_any_network_call(key: str, monkeypatch: pytest.MonkeyPatch):
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached the network")

    for name in ("put_async", "get_async", "head_async", "delete_async"):
        monkeypatch.setattr(storage_s3.obs, name, no_network)
    # an endpoint nothing listens on: a request that slipped through would fail differently
    storage = S3Storage(S3Location("mmq-test", "p", "http://127.0.0.1:9", "us-east-1"))
    with pytest.raises(StorageKeyError):
        await storage.get(key)
    with pytest.raises(StorageKeyError):
        await storage.exists(key)
    with pytest.raises(StorageKeyError):
        await storage.delete(key)
    with pytest.raises(StorageKeyError):
        await storage.put(key, b"x")
    with pytest.raises(StorageKeyError):
        await collect(storage, key, 1024)


def test_s3_key_length_counts_the_prefix():
    storage = S3Storage(S3Location("mmq-test", "p" * 100, None, "us-east-1"))
    assert storage.path("k" * 923) == "p" * 100 + "/" + "k" * 923  # exactly 1024
    with pytest.raises(StorageKeyError):
        storage.path("k" * 924)  # a valid key on its own, too long once joined under the prefix


# ---- URL parsing: no server needed -------------------------------------------------------------------


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix",
        f"s3://{SECRET}@bucket",
        f"s3://bucket/p?aws_secret_access_key={SECRET}",
        f"s3://bucket/p?access_key_id=AKID&secret_access_key={SECRET}",
        f"s3://bucket/p?endpoint_url=http://127.0.0.1:9000&session_token={SECRET}",
        f"s3://bucket/p?token={SECRET}",
        f"s3://bucket/p?password={SECRET}",
        f"s3://bucket/p?endpoint_url=http://minio:{SECRET}@127.0.0.1:9000",
    ],
)
def test_credentials_in_url_are_refused_without_echoing_them(url: str):
    with pytest.raises(S3UrlError, match="credentials") as e:
        open_storage(url)
    assert SECRET not in str(e.value)


def test_url_parameters_and_env_precedence():
    env = {
        "AWS_ENDPOINT_URL": "http://generic:1",
        "AWS_ENDPOINT_URL_S3": "http://s3only:2",
        "AWS_REGION": "eu-west-3",
    }
    loc = S3Location.parse("s3://bkt/a/b?endpoint_url=http://127.0.0.1:9000/&region=auto", env)
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == (
        "bkt",
        "a/b",
        "http://127.0.0.1:9000",
        "auto",
    )
    loc = S3Location.parse("s3://bkt/a/b/", env)
    assert (loc.prefix, loc.endpoint, loc.region) == ("a/b", "http://s3only:2", "eu-west-3")
    loc = S3Location.parse(
        "s3://bkt", {"AWS_ENDPOINT_URL": "https://r2.example", "AWS_DEFAULT_REGION": "auto"}
    )
    assert (loc.prefix, loc.endpoint, loc.region) == ("", "https://r2.example", "auto")
    loc = S3Location.parse("s3://bkt", {})
    assert (loc.endpoint, loc.region) == (None, "us-east-1")


def test_url_attribute_is_canonical_and_secret_free(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRET + "tok")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    storage = open_storage("s3://bkt/a/b?endpoint_url=http://127.0.0.1:9000&region=eu-west-1")
    assert isinstance(storage, S3Storage)
    assert storage.url == "s3://bkt/a/b?endpoint_url=http://127.0.0.1:9000&region=eu-west-1"
    assert SECRET not in storage.url and "AKID" not in storage.url and SECRET not in repr(storage)
    again = S3Location.parse(storage.url, {})
    assert vars(again) == vars(storage.location)
    assert open_storage("s3://bkt").url == "s3://bkt"


def test_client_is_path_style_and_allows_http_only_with_an_endpoint(monkeypatch: pytest.MonkeyPatch):
    for name in _FOREIGN_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    local = S3Storage.from_url("s3://bkt?endpoint_url=http://127.0.0.1:9000")
    assert str(local._store.config["virtual_hosted_style_request"]).lower() == "false"
    assert str((local._store.client_options or {}).get("allow_http")).lower() == "true"
    aws = S3Storage.from_url("s3://bkt")
    assert "endpoint" not in aws._store.config
    assert not (aws._store.client_options or {}).get("allow_http")
    https = S3Storage.from_url("s3://bkt?endpoint_url=https://minio.internal:9000")
    assert not (https._store.client_options or {}).get("allow_http")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("s3:///prefix", "bucket"),
        ("s3://b/prefix", "bucket"),
        ("s3://bad_bucket!/p", "bucket"),
        ("s3://bkt/../escape", "prefix"),
        ("s3://bkt/a//b", "prefix"),
        ("s3://bkt/p?foo=1", "unknown"),
        ("s3://bkt/p?region=us-east-1&region=eu-west-1", "repeated"),
        ("s3://bkt/p?endpoint_url=ftp://host", "http"),
        ("s3://bkt/p?endpoint_url=http://host/?x=1", "query"),
        ("s3://bkt/p?region=EU WEST", "region"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str):
    with pytest.raises(S3UrlError, match=match):
        S3Location.parse(url, {})


def test_unsupported_scheme_lists_both_backends_and_hides_passwords():
    with pytest.raises(ValueError, match=r"file://.*s3://") as e:
        open_storage(f"gs://user:{SECRET}@bucket/x")
    assert SECRET not in str(e.value)
