"""The CLI as a client of the HTTP API, so that one key means one tenant everywhere.

With `MMQ_API_URL` set, `submit`, `status`, `batches`, `results`, `cancel` and `retry-failed` go through
the API with `MMQ_API_KEY`: the same key a browser signs in with and the OpenAI SDK sends, the same
tenant, the same 404 for another tenant's ids. Such a CLI needs neither Redis nor the store's
credentials. Without `MMQ_API_URL` the CLI runs in admin mode: every command works on Redis
(`MMQ_REDIS_URL`) and the store directly, with full access, for an operator on the Redis host; there
`--tenant` picks the tenant (default `default`, whose keys see the work made without `--tenant`).
The other commands (workflows, templates, keys, run, worker, api, simulate) always run in admin mode.

What the API cannot do for a client is done here: audio lines naming a local file (`"file": "a.wav"`,
relative to the JSONL file) are sent with the file's bytes as a data: URL, since the API never reads its
own disk. Views come back in the API's JSON and are shown with the admin mode's own layouts.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.cli.errors import UserError
from producer.cli.flags import DEFAULT_TENANT

if TYPE_CHECKING:  # httpx is imported when a command runs: `mmq --help` stays fast
    import httpx

    from mmq.contract import BatchRecord, JobRecord

API_COMMANDS = ("submit", "status", "batches", "results", "cancel", "retry-failed")
CHUNK = 1 << 20
_LOCAL_AUDIO = (b"/v1/audio/transcriptions", b"/v1/audio/translations")


def modes_help() -> str:
    """The `mmq --help` epilog: the two modes, and the one this shell is in."""
    from mmq.settings import get_settings

    try:
        url = get_settings().api_url
    except Exception:  # a broken setting is reported when a command runs
        url = None
    now = (
        f"now: API mode (MMQ_API_URL={url})"
        if url
        else "now: admin mode (MMQ_API_URL is not set; commands use MMQ_REDIS_URL)"
    )
    return (
        "modes:\n"
        "  API mode    MMQ_API_URL=http://host:8000 and MMQ_API_KEY=mmq_…: submit, status, batches,\n"
        "              results, cancel and retry-failed go through the HTTP API as the key's tenant\n"
        "              (what a browser or the OpenAI SDK with that key sees); no Redis access needed.\n"
        "  admin mode  MMQ_API_URL unset: every command works on Redis (MMQ_REDIS_URL) and the store\n"
        f"              directly, for operators; --tenant picks the tenant (default: {DEFAULT_TENANT}).\n"
        "              Workflows, templates, keys, run, worker, api and simulate always run so.\n"
        f"  {now}"
    )


def mode_note() -> str:
    """One line for the description of a command that runs in both modes."""
    return (
        "Runs through the HTTP API as MMQ_API_KEY's tenant when MMQ_API_URL is set; otherwise in admin "
        "mode, on Redis (MMQ_REDIS_URL) directly."
    )


class Remote:
    """An async client of the mmq API with the user's key; errors become one-paragraph UserErrors."""

    def __init__(self, url: str, key: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(60.0, connect=10.0),
            transport=transport,
        )

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def _refused(self, response: httpx.Response, missing: str | None) -> UserError:
        if response.status_code == 401:
            return UserError(
                f"the API at MMQ_API_URL={self.url} refuses MMQ_API_KEY (an unknown or revoked key). Check "
                "the key, or make one on the Redis host with `mmq keys create --tenant NAME`."
            )
        if response.status_code == 404 and missing:
            return UserError(f"{missing} for the tenant of MMQ_API_KEY (list yours with `mmq batches`)")
        try:
            body = response.json()
            detail = body.get("detail") or (body.get("error") or {}).get("message") or body
        except ValueError:
            detail = response.text[:500] or response.reason_phrase
        return UserError(f"the API at {self.url} answered {response.status_code}: {detail}")

    def _unreachable(self, e: Exception) -> UserError:
        return UserError(
            f"cannot reach the mmq API at MMQ_API_URL={self.url} ({type(e).__name__}: {e}). Start it "
            "(`mmq api`), fix MMQ_API_URL, or unset it to work on Redis directly (admin mode)."
        )

    async def call(self, method: str, path: str, *, missing: str | None = None, **kw: Any) -> Any:
        """The JSON answer of a call; a 404 is `missing` (a UserError), other refusals too."""
        import httpx

        try:
            response = await self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        if response.status_code >= 400:
            raise self._refused(response, missing)
        return response.json()

    async def download(self, path: str, out: Path, *, missing: str | None = None) -> None:
        """Streams an answer's body into `out`."""
        import httpx

        try:
            async with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._refused(response, missing)
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("wb") as f:
                    async for chunk in response.aiter_bytes():
                        f.write(chunk)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None

    async def jobs(self, batch_id: str, page: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """The batch's job views, in submission order."""
        offset = 0
        while True:
            got = await self.call(
                "GET", f"/api/batches/{batch_id}/jobs", params={"offset": offset, "limit": page}
            )
            for job in got["data"]:
                yield job
            if len(got["data"]) < page:
                return
            offset += page


def api_mode() -> Remote | None:
    """The API client when MMQ_API_URL is set (then MMQ_API_KEY must be too), else None: admin mode."""
    from mmq.settings import get_settings

    settings = get_settings()
    if not settings.api_url:
        return None
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise UserError(
            f"MMQ_API_URL={settings.api_url} is set but MMQ_API_KEY is not: set it to your API key (an "
            "operator makes one with `mmq keys create --tenant NAME`), or unset MMQ_API_URL to work on "
            "Redis directly (admin mode)."
        )
    if not settings.api_url.startswith(("http://", "https://")):
        raise UserError(f"MMQ_API_URL={settings.api_url} is not an http(s) URL (e.g. http://127.0.0.1:8000).")
    return Remote(settings.api_url, settings.api_key.get_secret_value())


def no_tenant(args: argparse.Namespace) -> None:
    """In API mode the key decides the tenant: a --tenant naming another one is a mistake."""
    tenant = getattr(args, "tenant", DEFAULT_TENANT)
    if tenant not in (None, DEFAULT_TENANT):
        raise UserError(
            f"--tenant {tenant} is for admin mode: with MMQ_API_URL set, work belongs to the tenant of "
            "MMQ_API_KEY. Drop --tenant (use that tenant's key), or unset MMQ_API_URL to work on Redis."
        )


def batch_record(view: dict[str, Any]) -> BatchRecord:
    from mmq.contract import BatchRecord

    return BatchRecord.model_validate({**view, "tenant": view.get("tenant") or "(this key's)"})


def job_record(view: dict[str, Any]) -> JobRecord:
    """A job view as a record, for the admin mode's layout (result files are named by their URLs)."""
    from mmq.contract import JobRecord, JobResult, ResultFile

    result = view.get("result")
    fields = {k: v for k, v in view.items() if k not in ("result", "object", "cost")}
    if result:
        files = [
            ResultFile(key=f["url"], content_type=f["content_type"], bytes=f["bytes"])
            for f in result["files"]
        ]
        fields["result"] = JobResult(body_key=result["url"], files=files)
    return JobRecord.model_validate({**fields, "tenant": view.get("tenant") or "(this key's)"})


class RemoteRecords:
    """What `progress.watch` reads (a batch by id), through the API."""

    def __init__(self, api: Remote) -> None:
        self.api = api

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        return batch_record(
            await self.api.call("GET", f"/api/batches/{batch_id}", missing=f"no batch {batch_id}")
        )


# ------------------------------------------------------------------------------------------ submit
def _inline_audio(raw: bytes, line_no: int, base_dir: Path) -> bytes:
    """An audio line naming a local file, with the file's bytes as a data: URL instead."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw  # the API names the bad line
    body = obj.get("body") if isinstance(obj, dict) else None
    ref = body.get("file") if isinstance(body, dict) else None
    if not isinstance(ref, str) or ref.startswith(("data:", "http://", "https://", "mmq-blob://")):
        return raw
    from mmq.settings import get_settings
    from producer.local_files import LocalFileError, read_local_file

    path = (base_dir / ref).expanduser()
    try:
        data = read_local_file(path, ref, get_settings().max_line_bytes)
    except LocalFileError as e:
        print(f"mmq: line {line_no}: {e}; that line will fail", file=sys.stderr)
        return raw
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body["file"] = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    body.setdefault("filename", path.name)
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def _body(path: Path) -> AsyncIterator[bytes]:
    """The JSONL file in chunks of about CHUNK bytes, local audio files inlined."""
    chunk: list[bytes] = []
    size = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if any(url in raw for url in _LOCAL_AUDIO):
                raw = _inline_audio(raw, n, path.parent)
            chunk.append(raw)
            size += len(raw)
            if size >= CHUNK:
                yield b"".join(chunk)
                chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _query(options: dict[str, Any], source: str) -> dict[str, str]:
    """submit_batch's options (producer.cli.options.batch_options) as POST /api/batches parameters."""
    params = {"source": source, "priority": str(options.get("priority", "normal"))}
    if options.get("config"):
        params["config"] = options["config"]  # the file's JSON text, checked by the API
    for name in ("media", "cache"):
        if options.get(name) is not None:
            params[name] = json.dumps(options[name])
    for name in ("not_before", "deadline"):
        if options.get(name) is not None:
            params[name] = repr(options[name])
    for name in ("webhook_url", "max_cost", "on_budget", "tier"):
        if options.get(name) is not None:
            params[name] = str(options[name])
    return params


async def submit(api: Remote, args: argparse.Namespace, path: Path) -> int:
    import httpx

    from producer.cli.options import batch_options
    from producer.cli.progress import watch

    no_tenant(args)
    params = _query(batch_options(args, None), path.name)
    view = await api.call(
        "POST",
        "/api/batches",
        params=params,
        content=_body(path),
        headers={"content-type": "application/jsonl"},
        timeout=httpx.Timeout(None, connect=10.0),  # a large file takes as long as it takes
    )
    batch = batch_record(view)
    print(batch.id, flush=True)
    print(
        f"mmq: {batch.counts.total} jobs ({batch.counts.failed} invalid) for tenant {batch.tenant} at "
        f"{api.url}; follow with `mmq status {batch.id} --watch`",
        file=sys.stderr,
    )
    if args.watch:
        await watch(RemoteRecords(api), batch.id)  # type: ignore[arg-type]
    return 0


# ------------------------------------------------------------------------------------------ reads
async def failures(api: Remote, batch_id: str) -> list[tuple[str, int, str]]:
    """As status.failures_by_type: (error type, count, one example) of the failed jobs, most first."""
    from collections import Counter

    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    async for job in api.jobs(batch_id):
        error = job.get("error")
        if job.get("status") != "failed" or not error:
            continue
        kind = error["type"] + (f" ({error['code']})" if error.get("code") else "")
        counts[kind] += 1
        examples.setdefault(kind, f"{job.get('custom_id') or job['id']}: {error['message']}")
    return [(kind, n, examples[kind]) for kind, n in counts.most_common()]


async def status(api: Remote, args: argparse.Namespace) -> int:
    from producer.cli.progress import watch
    from producer.cli.status import batch_lines, job_lines

    if args.id.startswith("job_"):
        view = await api.call("GET", f"/api/jobs/{args.id}", missing=f"no job {args.id}")
        print(
            json.dumps(view, indent=2) if args.json else "\n".join(job_lines(job_record(view), time.time()))
        )
        return 0
    view = await api.call("GET", f"/api/batches/{args.id}", missing=f"no batch {args.id}")
    if args.watch:
        await watch(RemoteRecords(api), args.id)  # type: ignore[arg-type]
        view = await api.call("GET", f"/api/batches/{args.id}", missing=f"no batch {args.id}")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    batch = batch_record(view)
    found = await failures(api, batch.id) if batch.counts.failed else []
    print("\n".join(batch_lines(batch, found, time.time(), view.get("provider_batches"))))
    return 0


async def batches(api: Remote, args: argparse.Namespace) -> int:
    from producer.cli.batches import table

    no_tenant(args)
    if args.all_tenants:
        raise UserError(
            "--all-tenants is for admin mode (an operator on the Redis host): with MMQ_API_URL set, a key "
            "sees its own tenant's batches only."
        )
    views = (await api.call("GET", "/api/batches", params={"limit": min(args.limit, 100)}))["data"]
    if args.json:
        print(json.dumps(views, indent=2))
    elif views:
        print("\n".join(table([batch_record(v) for v in views], time.time(), with_tenant=False)))
    else:
        print("mmq: no batches for the tenant of MMQ_API_KEY", file=sys.stderr)
    return 0


async def results(api: Remote, args: argparse.Namespace) -> int:
    from mmq.media import extension_for
    from producer.safe_names import OutputNames

    out = Path(args.out)
    await api.download(f"/api/batches/{args.id}/output.jsonl", out, missing=f"no batch {args.id}")
    written = 0
    if args.files:
        files_dir = Path(args.files)
        files_dir.mkdir(parents=True, exist_ok=True)
        same_folder = out.parent.resolve() == files_dir.resolve()
        names = OutputNames(keep_dirs=False, reserved=[out.name] if same_folder else [])
        async for job in api.jobs(args.id):
            files = (job.get("result") or {}).get("files") or []
            if not files:
                continue
            suffixes = [
                (f"-{n}" if len(files) > 1 else "") + extension_for(f["content_type"])
                for n, f in enumerate(files)
            ]
            for f, rel in zip(files, names.claim(job.get("custom_id") or job["id"], suffixes), strict=True):
                try:
                    await api.download(f["url"], files_dir / rel)
                except UserError as e:  # this file fails alone, as in admin mode
                    print(f"mmq: {rel} not written: {e}", file=sys.stderr)
                    continue
                written += 1
    print(
        f"mmq: wrote {args.out}" + (f" and {written} files to {args.files}" if args.files else ""),
        file=sys.stderr,
    )
    return 0


async def cancel(api: Remote, args: argparse.Namespace) -> int:
    view = await api.call("POST", f"/api/batches/{args.id}/cancel", missing=f"no batch {args.id}")
    cancelled = view["counts"]["cancelled"]
    print(f"mmq: batch {args.id} {view['status']}; {cancelled} jobs cancelled", file=sys.stderr)
    return 0


async def retry_failed(api: Remote, args: argparse.Namespace) -> int:
    from producer.cli.progress import watch

    view = await api.call("POST", f"/api/batches/{args.id}/retry-failed", missing=f"no batch {args.id}")
    requeued = view.get("requeued", 0)
    print(f"mmq: {requeued} failed jobs of {args.id} queued again", file=sys.stderr)
    if args.watch and requeued:
        await watch(RemoteRecords(api), args.id)  # type: ignore[arg-type]
    return 0


def run(command: Any, api: Remote, *args: Any) -> int:
    """`command(api, *args)` to its end, the client closed after."""
    import asyncio

    async def go() -> int:
        async with api:
            return await command(api, *args)

    return asyncio.run(go())
