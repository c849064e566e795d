"""The console's pages and actions: sign-in, the batches list, a batch (with its provider batches, when
the batch tier sends its jobs through them), a job; cancel, retry, downloads.

Each page has parts (`…/part/{name}`) that the page's script fetches again while a batch runs, so counts,
progress, the chart and the job table move without a reload; a part is the same template the page
includes, so the server renders every piece of HTML once, one way (escaped). Every read is the viewer's
tenant's: a batch or job of another tenant, or none at all, is the same 404.

The reads and writes are the API's own: `Records` for batches and jobs, `Packs.batch_packs` for the
provider batches holding a batch's jobs (what GET /api/batches/{id} lists), `Producer.cancel_batch` and
`Producer.retry_failed` for the actions, `producer.views.iter_output` for output.jsonl and the error lines,
`producer.views.result_body` for a result.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from mmq.contract import BatchRecord, JobRecord, JobStatus, Tier
from mmq.request_models import Kind
from producer.console import reads
from producer.console.app import PREFIX, console_of, viewer
from producer.console.job_media import (
    download_name,
    first_thumb_source,
    input_items,
    load_input,
    request_body,
    text_preview,
)
from producer.console.session import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    SESSION_TTL_S,
    check_csrf,
    clear_cookie,
    read_form,
    same_origin,
    set_cookie,
    tokens_match,
)
from producer.views import iter_output, result_body

BATCHES_PER_PAGE = 20
JOBS_PER_PAGE = 50
MAX_JOBS_PER_PAGE = 200
STATUSES = [s.value for s in JobStatus]
KINDS = [k.value for k in Kind]


def _int(value: str | None, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        return max(low, min(int(value or default), high))
    except ValueError:
        return default


def _safe_next(target: str | None, prefix: str) -> str:
    """A post-sign-in destination inside the console (never another site: no scheme, no `//`)."""
    if target and target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return prefix + "/"


# ------------------------------------------------------------------------------------------- sign-in
async def login_page(request: Request) -> Response:
    c = console_of(request)
    if await c.sessions.get(request.cookies.get(COOKIE), c.keys) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next"), PREFIX), 303)
    return _login_form(request, status=200)


def _login_form(
    request: Request, status: int, error: str | None = None, next_: str | None = None
) -> Response:
    token = secrets.token_urlsafe(24)
    target = next_ if next_ is not None else request.query_params.get("next", "")
    response = console_of(request).render(
        request,
        "login.html",
        {"token": token, "next": target, "error": error},
        status_code=status,
    )
    set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_TTL_S)
    return response


async def login(request: Request) -> Response:
    c = console_of(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not same_origin(request):  # checked before a byte of the body is read
        raise HTTPException(403, "sign-in refused: reload the sign-in page and try again")
    form = await read_form(request)
    if not tokens_match(expected, form.get("login_token")):
        raise HTTPException(403, "sign-in refused: reload the sign-in page and try again")
    opened = await c.sessions.open(form.get("key", "").strip(), c.keys)
    if opened is None:
        error = "That key is not an mmq API key of this server."
        return _login_form(request, status=401, error=error, next_=form.get("next", ""))
    sid, _ = opened
    response = RedirectResponse(_safe_next(form.get("next"), PREFIX), status_code=303)
    set_cookie(response, request, COOKIE, sid, SESSION_TTL_S)
    clear_cookie(response, request, LOGIN_COOKIE)
    return response


async def logout(request: Request) -> Response:
    c = console_of(request)
    session = await viewer(request)
    await check_csrf(request, session)
    await c.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.headers["clear-site-data"] = '"cache"'  # media kept by the browser go with the session
    clear_cookie(response, request, COOKIE)
    return response


# ------------------------------------------------------------------------------------------- batches
async def _batches_context(request: Request) -> dict[str, Any]:
    c = console_of(request)
    session = await viewer(request)
    page = _int(request.query_params.get("page"), 0)
    batches, total = await reads.batch_page(c.records, session.tenant, page, BATCHES_PER_PAGE)
    pages = max(1, -(-total // BATCHES_PER_PAGE))
    return {
        "batches": batches,
        "page": page,
        "pages": pages,
        "total": total,
        "live": any(b.status in reads.RUNNING for b in batches),
    }


async def batches_page(request: Request) -> Response:
    return console_of(request).render(request, "batches.html", await _batches_context(request))


async def batches_part(request: Request) -> Response:
    return console_of(request).render(request, "_batch_rows.html", await _batches_context(request))


# --------------------------------------------------------------------------------------------- batch
async def own_batch(request: Request) -> BatchRecord:
    c = console_of(request)
    session = await viewer(request)
    batch = await c.records.get_batch(request.path_params["batch_id"])
    if batch is None or batch.tenant != session.tenant:
        raise HTTPException(404, "Not found")
    return batch


def _filter(request: Request) -> reads.JobFilter:
    q = request.query_params
    status = q.get("status", "")
    kind = q.get("kind", "")
    return reads.JobFilter(
        status=status if status in STATUSES else "",
        kind=kind if kind in KINDS else "",
        error=q.get("error", "")[:100],
        q=q.get("q", "")[:200],
    )


async def _jobs_context(request: Request, batch: BatchRecord) -> dict[str, Any]:
    c = console_of(request)
    flt = _filter(request)
    limit = _int(request.query_params.get("limit"), JOBS_PER_PAGE, 1, MAX_JOBS_PER_PAGE)
    start = _int(request.query_params.get("from"), 0)
    page = await reads.jobs_page(c.records, batch.id, flt, start, limit)
    return {
        "jobs": page.jobs,
        "jobs_page": page,
        "filter": flt,
        "limit": limit,
        "thumbs": {j.id: first_thumb_source(j) for j in page.jobs},
        "statuses": STATUSES,
        "kinds": KINDS,
        "base_query": {**flt.query(), **({"limit": limit} if limit != JOBS_PER_PAGE else {})},
    }


def _batch_context(batch: BatchRecord) -> dict[str, Any]:
    return {"batch": batch, "live": batch.status in reads.RUNNING}


async def _packs_context(request: Request, batch: BatchRecord) -> dict[str, Any]:
    """The provider batches holding the batch's jobs, oldest first, and whether the page shows them (a
    batch on the batch tier, or one that has any)."""
    packs = sorted(await console_of(request).packs.batch_packs(batch.id), key=lambda p: p.created_at)
    return {"packs": packs, "show_packs": bool(packs) or batch.tier is not Tier.realtime}


async def batch_page(request: Request) -> Response:
    batch = await own_batch(request)
    context = {**_batch_context(batch), **await _jobs_context(request, batch)}
    context.update(await _packs_context(request, batch))
    context["notice"] = _notice(request)
    return console_of(request).render(request, "batch.html", context)


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done")
    if done == "cancelled":
        return "Cancel asked: queued jobs are cancelled, running ones finish."
    if done == "retried":
        n = _int(request.query_params.get("n"), 0)
        return f"{n:,} failed job{'s' if n != 1 else ''} queued again."
    return None


async def batch_part(request: Request) -> Response:
    batch = await own_batch(request)
    part = request.path_params["part"]
    c = console_of(request)
    if part == "summary":
        return c.render(request, "_summary.html", _batch_context(batch))
    if part == "jobs":
        return c.render(
            request, "_jobs.html", {**_batch_context(batch), **await _jobs_context(request, batch)}
        )
    if part == "provider-batches":
        context = {**_batch_context(batch), **await _packs_context(request, batch)}
        return c.render(request, "_provider_batches.html", context)
    if part == "stats":
        stats = await reads.batch_stats(c.records, batch)
        return c.render(request, "_stats.html", {**_batch_context(batch), "stats": stats, "now": time.time()})
    raise HTTPException(404, "Not found")


async def cancel(request: Request) -> Response:
    batch = await own_batch(request)
    await check_csrf(request, request.state.session)
    await console_of(request).producer.cancel_batch(batch.id)
    return RedirectResponse(f"{PREFIX}/batches/{batch.id}?done=cancelled", status_code=303)


async def retry_failed(request: Request) -> Response:
    batch = await own_batch(request)
    await check_csrf(request, request.state.session)
    n = await console_of(request).producer.retry_failed(batch.id)
    query = urlencode({"done": "retried", "n": n})
    return RedirectResponse(f"{PREFIX}/batches/{batch.id}?{query}", status_code=303)


async def download(request: Request) -> Response:
    """output.jsonl (every ended line, as GET /api/batches/{id}/output.jsonl) or errors.jsonl (the failed
    and cancelled lines, as the /v1 error file)."""
    batch = await own_batch(request)
    c = console_of(request)
    name = request.path_params["name"]
    if name == "output.jsonl":
        statuses = None
    elif name == "errors.jsonl":
        statuses = (JobStatus.failed, JobStatus.cancelled)
    else:
        raise HTTPException(404, "Not found")
    return StreamingResponse(
        iter_output(c.records, c.storage, batch.id, statuses),
        media_type="application/jsonl",
        headers={
            "content-disposition": f'attachment; filename="{batch.id}-{name}"',
            "cache-control": "no-store",
        },
    )


# ----------------------------------------------------------------------------------------------- job
async def own_job(request: Request, *, with_config: bool = False) -> JobRecord:
    c = console_of(request)
    session = await viewer(request)
    [job] = await c.records.get_jobs([request.path_params["job_id"]], with_config=with_config)
    if job is None or job.tenant != session.tenant:
        raise HTTPException(404, "Not found")
    return job


def _attempt_rows(job: JobRecord) -> list[dict[str, Any]]:
    """The attempt trail with each call's start and the wait before it (Attempt.at is when it ended)."""
    rows: list[dict[str, Any]] = []
    origin = job.started_at or (job.attempts[0].at - job.attempts[0].latency_ms / 1000 if job.attempts else 0)
    previous_end: float | None = None
    span = max((a.at for a in job.attempts), default=origin) - origin or 1.0
    for n, a in enumerate(job.attempts, start=1):
        start = a.at - a.latency_ms / 1000
        rows.append(
            {
                "n": n,
                "a": a,
                "offset_s": start - origin,
                "wait_s": (start - previous_end) if previous_end is not None else None,
                "x": max(0.0, min(1.0, (start - origin) / span)),
                "w": max(0.004, min(1.0, (a.latency_ms / 1000) / span)),
            }
        )
        previous_end = a.at
    return rows


def _result_view(job: JobRecord, body: Any) -> dict[str, Any]:
    """What the outputs column shows, picked from the OpenAI-shaped result body."""
    view: dict[str, Any] = {"texts": [], "segments": [], "transcript": None}
    if not isinstance(body, dict):
        return view
    if job.kind is Kind.chat:
        for choice in body.get("choices") or []:
            message = (choice or {}).get("message") or {}
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            view["texts"].append(
                {
                    "role": message.get("role", "assistant"),
                    "text": content or "",
                    "finish": choice.get("finish_reason"),
                }
            )
    elif job.kind in (Kind.transcription, Kind.translation):
        view["transcript"] = body.get("text")
        for seg in body.get("segments") or []:
            if isinstance(seg, dict):
                view["segments"].append(
                    {"start": seg.get("start"), "end": seg.get("end"), "text": seg.get("text", "")}
                )
    elif job.kind is Kind.image:
        view["revised"] = [d.get("revised_prompt") for d in body.get("data") or [] if isinstance(d, dict)]
    return view


async def job_page(request: Request) -> Response:
    c = console_of(request)
    job = await own_job(request, with_config=True)
    body = await request_body(job, c.storage)
    items = input_items(job, body)
    previews = {}
    for item in items:
        if item.role == "document" and item.source == "inline":
            previews[item.n] = text_preview(item, await load_input(item, c.storage))
    result: Any = None
    if job.result:
        try:
            result = await result_body(job, c.storage)
        except Exception:  # a result whose body is gone still shows its record
            result = None
    cached_from_own = False
    if job.cached_from:
        [source] = await c.records.get_jobs([job.cached_from])
        cached_from_own = source is not None and source.tenant == job.tenant
    context = {
        "job": job,
        "body": body,
        "items": items,
        "item_by_where": {i.where: i for i in items},
        "previews": previews,
        "result": _result_view(job, result),
        "has_result_body": result is not None,
        "attempts": _attempt_rows(job),
        "cached_from_own": cached_from_own,
        "file_name": download_name(job.custom_id or job.id, ""),
        "live": job.status in (JobStatus.queued, JobStatus.running),
    }
    return c.render(request, "job.html", context)


async def job_raw(request: Request) -> Response:
    """The request or result JSON, for the job page's "raw JSON" (fetched when opened)."""
    c = console_of(request)
    job = await own_job(request)
    what = request.path_params["what"]
    if what == "request":
        data = await request_body(job, c.storage)
    elif what == "result" and job.result:
        data = await result_body(job, c.storage)
    else:
        raise HTTPException(404, "Not found")
    return JSONResponse(data, headers={"cache-control": "no-store"})


def routes(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/login", login_page, methods=["GET"]),
        Route(f"{prefix}/login", login, methods=["POST"]),
        Route(f"{prefix}/logout", logout, methods=["POST"]),
        Route(f"{prefix}/", batches_page, methods=["GET"]),
        Route(f"{prefix}/part/batches", batches_part, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}", batch_page, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}/part/{{part}}", batch_part, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}/cancel", cancel, methods=["POST"]),
        Route(f"{prefix}/batches/{{batch_id}}/retry-failed", retry_failed, methods=["POST"]),
        Route(f"{prefix}/batches/{{batch_id}}/{{name}}", download, methods=["GET"]),
        Route(f"{prefix}/jobs/{{job_id}}", job_page, methods=["GET"]),
        Route(f"{prefix}/jobs/{{job_id}}/raw/{{what}}", job_raw, methods=["GET"]),
    ]
