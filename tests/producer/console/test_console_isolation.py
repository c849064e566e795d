"""Tenant isolation for every console URL, escaping of everything users and providers wrote, and the
Content-Security-Policy: one tenant's pages are crawled, and every URL found is then asked for by the
other tenant (404), by nobody (sign-in), and guessed ids and blob keys are tried."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from producer.console.app import PAGE_CSP
from tests.producer.console.conftest import KEY_A, KEY_B, NASTY, Env, Seeded

SHARED = {"/console/", "/console/login", "/console/logout", "/console/part/batches"}  # every tenant's own


class Links(HTMLParser):
    """Every href, src, action and data-poll / data-src of a page, and every <script> it has."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action", "data-poll", "data-src") and value:
                self.urls.add(value)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
            if name == "style":
                self.handlers.append(f"{tag} style")
        if tag == "script":
            self.scripts.append(dict(attrs))


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


async def crawl(env: Env, seeded: Seeded) -> dict[str, str]:
    """Tenant A's console: the list, the batch (filtered too), its parts and every job page; url → html."""
    a = await env.client(KEY_A)
    pages: dict[str, str] = {}
    todo = [
        "/console/",
        f"/console/batches/{seeded.batch_id}",
        f"/console/batches/{seeded.batch_id}?status=failed",
    ]
    todo += [f"/console/batches/{seeded.batch_id}/part/{p}" for p in ("summary", "stats", "jobs")]
    todo += [f"/console/jobs/{j.id}" for j in seeded.jobs.values()]
    for url in todo:
        r = await a.get(url)
        assert r.status_code == 200, (url, r.text[:500])
        pages[url] = r.text
    return pages


def console_urls(pages: dict[str, str]) -> set[str]:
    found = set(pages)
    for html in pages.values():
        found |= {u.replace("&amp;", "&") for u in parse(html).urls if u.startswith("/console/")}
    return {u for u in found if u.split("?")[0] not in SHARED and not u.startswith("/console/static/")}


async def test_another_tenant_gets_404_for_every_page_and_medium_of_this_one(env: Env, seeded: Seeded):
    pages = await crawl(env, seeded)
    urls = console_urls(pages)
    # the crawl reached every kind of medium
    assert any(re.search(r"/input/\d+/thumb/m$", u) for u in urls)
    assert any(re.search(r"/output/\d+$", u) for u in urls)
    assert any(u.endswith("/thumb") for u in urls)
    assert any(u.endswith("output.jsonl") for u in urls)
    a = await env.client(KEY_A)
    b = await env.client(KEY_B)
    anonymous = await env.client()
    for url in sorted(urls):
        assert (await a.get(url)).status_code in (200, 404), url  # 404: a part with no thumbnail
        r = await b.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert not any(j.id in r.text for j in seeded.jobs.values()), url
        assert (await anonymous.get(url)).status_code in (303, 401), url
    listing = (await b.get("/console/")).text
    assert seeded.batch_id not in listing and "No batches yet" in listing
    token = re.search(r'name="csrf" value="([^"]+)"', listing).group(1)
    for action in ("cancel", "retry-failed"):
        r = await b.post(f"/console/batches/{seeded.batch_id}/{action}", data={"csrf": token})
        assert r.status_code == 404
    assert (await env.records.get_batch(seeded.batch_id)).status.value == "in_progress"


async def test_guessed_ids_indexes_and_blob_keys_are_404(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    job = seeded.jobs["gen-image"]
    blob = job.result.files[0].key
    for url in (
        "/console/jobs/job_doesnotexist",
        "/console/batches/batch_doesnotexist",
        f"/console/jobs/{job.id}/output/1",
        f"/console/jobs/{job.id}/output/99999999",
        f"/console/jobs/{job.id}/output/-1",
        f"/console/jobs/{job.id}/input/0",
        f"/console/jobs/{job.id}/output/0/thumb/xl",
        f"/console/jobs/{job.id}/raw/secrets",
        f"/console/batches/{seeded.batch_id}/part/other",
        f"/console/batches/{seeded.batch_id}/passwd",
        f"/console/{blob}",
        f"/console/jobs/{job.id}/{blob}",
        f"/console/jobs/{job.id}/output/{blob}",
        "/console/static/../session.py",
        "/console/static/app.py",
    ):
        assert (await a.get(url)).status_code == 404, url


async def test_user_and_provider_text_is_escaped_and_no_inline_script_exists(env: Env, seeded: Seeded):
    pages = await crawl(env, seeded)
    nasty_job = seeded.jobs[NASTY]
    for url, html in pages.items():
        assert NASTY not in html, url
        links = parse(html)
        assert links.handlers == [], (url, links.handlers)  # no on*= handler, no style= attribute
        for script in links.scripts:  # the one script, from this origin, nothing inline
            assert (script.get("src") or "").startswith("/console/static/console.js"), (url, script)
    escaped = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    assert escaped in pages["/console/"]  # the batch's metadata
    job_page = pages[f"/console/jobs/{nasty_job.id}"]
    assert job_page.count(escaped) >= 4  # custom_id, prompt, answer, an attempt's error
    assert escaped in pages[f"/console/jobs/{seeded.jobs['chat-failed'].id}"]  # the error message
    stats = pages[f"/console/batches/{seeded.batch_id}/part/stats"]
    assert "provider_error" in stats and escaped in stats


async def test_every_answer_carries_the_csp_and_nosniff(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    anonymous = await env.client()
    job = seeded.jobs["gen-image"]
    for url in ("/console/", "/console/login", f"/console/jobs/{job.id}", "/console/static/console.js"):
        r = await (anonymous if url == "/console/login" else a).get(url)
        assert r.status_code == 200, url
        assert r.headers["content-security-policy"] == PAGE_CSP, url
        assert "'unsafe-inline'" not in PAGE_CSP.split("style-src")[0]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    for url in (f"/console/jobs/{job.id}/output/0", f"/console/batches/{seeded.batch_id}/output.jsonl"):
        r = await a.get(url)
        assert r.status_code == 200
        assert "sandbox" in r.headers["content-security-policy"], url
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in PAGE_CSP and "unsafe" not in PAGE_CSP
