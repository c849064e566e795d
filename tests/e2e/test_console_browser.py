"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright, against a real
`mmq api` process, a real worker and the simulator.

It signs in, watches a running batch's counts move on the batches list without a reload, opens the batch
and a job (the input image and the output are shown, the image actually decoded: naturalWidth > 0),
checks that the speech and transcription pages' audio sources answer with an audio type, follows a batch
on the batch tier (its jobs in a provider batch, the provider batch's id, state, lines, creation and
deadline fallback time, then all done), cancels a running batch from its page, and checks that a second
tenant's key sees none of it. The screenshots it
takes go to a temporary folder, or to docs/console/ (the README's) with MMQ_CONSOLE_SCREENSHOTS=1.

The browser must be there: a missing /usr/bin/chromium or Playwright fails the test, never skips it
(.ci/run installs both).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmq.simulator import encode_speech_wav
from tests.conftest import data_url
from tests.e2e.conftest import KEY_A, KEY_B, ROOT

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CATALOG = sorted((ROOT / "examples" / "catalog").glob("*.jpg"))
WAIT_MS = 120_000  # generous: a busy 2-core machine runs the worker, the API, Redis and the browser


@pytest.fixture
def simulator(make_simulator) -> str:
    """A slower simulator than the suite's (400 ms a call), so a batch is seen running."""
    return make_simulator("--latency-ms", "400", "--seed", "7")


@pytest.fixture
def mmq_env(mmq_env: dict[str, str]) -> dict[str, str]:
    # two calls at a time: ~5 jobs a second; a batch on the batch tier is packed and polled in seconds
    return {
        **mmq_env,
        "MMQ_MAX_JOBS": "2",
        "MMQ_BATCH_TIER_GATHER_S": "0.5",
        "MMQ_BATCH_TIER_POLL_MIN_S": "0.5",
        "MMQ_BATCH_TIER_POLL_MAX_S": "2",
    }


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(f"playwright is not installed ({e}): pip install -e '.[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("MMQ_CONSOLE_SCREENSHOTS"):
        out = ROOT / "docs" / "console"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path


def screenshot(page, path: Path) -> None:
    """A small PNG: the viewport, reduced to a 64-colour palette (a few tens of KB)."""
    raw = page.screenshot(full_page=False, animations="disabled", caret="hide")
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    img = img.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, format="PNG", optimize=True)


def submit(api: str, key: str, requests: list[dict], **options) -> dict:
    r = httpx.post(
        f"{api}/api/batches",
        json={"requests": requests, **options},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return r.json()


def catalog_lines(rounds: int, tag: str) -> list[dict]:
    """Caption requests for the catalog's photos; every prompt differs, so no line is a cache hit."""
    lines = []
    for r in range(rounds):
        for path in CATALOG:
            prompt = f"Write a one-line product caption for the {tag} catalog (take {r + 1})."
            body = {
                "model": "gpt-4o-mini",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": prompt},
                            {
                                "type": "image_url",
                                "image_url": {"url": data_url(path.read_bytes(), "image/jpeg")},
                            },
                        ],
                    }
                ],
            }
            lines.append(
                {
                    "custom_id": f"{path.stem}-{r}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
    return lines


def media_lines() -> list[dict]:
    wav = encode_speech_wav("where is my order")
    return [
        {
            "custom_id": "voice-welcome",
            "method": "POST",
            "url": "/v1/audio/speech",
            "body": {
                "model": "tts-1",
                "input": "Welcome to the shop.",
                "voice": "nova",
                "response_format": "wav",
            },
        },
        {
            "custom_id": "call-transcript",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {
                "model": "whisper-1",
                "file": data_url(wav, "audio/wav"),
                "response_format": "verbose_json",
            },
        },
        {
            "custom_id": "banner-image",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"prompt": "a banner with three mugs", "size": "256x256"},
        },
    ]


def sign_in(browser, api: str, key: str, shot: Path | None = None):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=api)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto("/")
    assert "/console/login" in page.url
    if shot:
        screenshot(page, shot)
    page.fill("#key", key)
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{api}/console/")
    return context, page


def count(page, scope: str, name: str) -> int:
    text = page.locator(f"{scope} [data-count={name}]").first.inner_text()
    return int(text.replace(",", "") or 0)


def wait_for(predicate, timeout_s: float = WAIT_MS / 1000, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise TimeoutError(what)


def loaded(page, selector: str) -> None:
    """The image decoded in the browser: naturalWidth > 0 (a broken image has 0)."""
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=WAIT_MS,
    )


def overnight_lines(n: int) -> list[dict]:
    """Text chats for the batch tier (OpenAI's Batch API, simulated)."""
    return [
        {
            "custom_id": f"overnight-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "max_tokens": 40,
                "messages": [{"role": "user", "content": f"Summarise review {i} in one line."}],
            },
        }
        for i in range(n)
    ]


def pack_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#provider-batches tr[data-pack]",
        """rows => rows.map(r => ({
            state: r.dataset.state,
            id: r.querySelector('[data-field=provider-batch-id]').textContent.trim(),
            lines: Number(r.querySelector('[data-field=lines]').textContent.replace(/,/g, '')),
            created: r.querySelector('td.when time') !== null,
            fallback: r.querySelector('[data-field=fallback] time') !== null,
            text: r.textContent,
        }))""",
    )


def test_the_console_in_a_real_browser(api: str, simulator: str, browser, shots: Path):
    assert len(CATALOG) >= 8
    context, page = sign_in(browser, api, KEY_A, shot=shots / "sign-in.png")

    # a batch on the batch tier: its chats go through the (simulated) OpenAI Batch API, which takes
    # 12 s to finish a batch here, so the page can be seen while the provider batch runs
    sim_root = simulator.removesuffix("/v1")
    r = httpx.post(f"{sim_root}/sim/batches", json={"batch_complete_s": 12}, timeout=30)
    assert r.status_code == 200, r.text
    overnight = submit(api, KEY_A, overnight_lines(6), tier="batch", metadata={"source": "overnight.jsonl"})
    assert overnight["tier"] == "batch"
    # while its provider batch runs, its page shows its jobs in it, the provider batch's id, state,
    # lines, when it was made and when it would fall back to realtime
    seen_running: list[dict] = []

    def provider_batch_running() -> bool:
        page.goto(f"/console/batches/{overnight['id']}")
        rows = [r for r in pack_rows(page) if r["id"].startswith("batch_")]
        running = [r for r in rows if r["state"] in ("validating", "running")]
        if running and count(page, "#provider-batches", "provider_batch") > 0:
            seen_running.extend(running)
            return True
        assert not any(r["state"] == "harvested" for r in rows), f"the provider batch ended unseen: {rows}"
        return False

    wait_for(provider_batch_running, what="the batch tier's provider batch on the batch's page")
    assert seen_running[0]["created"] and seen_running[0]["fallback"], seen_running
    assert "openai" in seen_running[0]["text"] and seen_running[0]["lines"] > 0
    screenshot(page, shots / "provider-batches.png")

    # two small batches first, so the list has more than one kind of row: one with a line refused at
    # submit (it ends at once, failed), one scheduled an hour ahead at high priority (it waits)
    refused = {"custom_id": "no-such-url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}
    submit(api, KEY_A, [refused], metadata={"source": "typo.jsonl"})
    submit(
        api,
        KEY_A,
        catalog_lines(1, "winter")[:4],
        not_before=time.time() + 3600,
        priority="high",
        metadata={"source": "night.jsonl"},
    )

    # a running batch's counts move on the list, with no reload of the page
    batch = submit(
        api, KEY_A, catalog_lines(3, "spring") + media_lines(), metadata={"source": "catalog.jsonl"}
    )
    row = f"tr[data-batch='{batch['id']}']"
    page.goto("/console/")
    page.wait_for_selector(row)
    page.evaluate("window.__sameDocument = true")
    total = batch["counts"]["total"]
    seen: set[int] = set()

    def moving() -> bool:  # a count between none and all seen, then a higher one
        seen.add(count(page, row, "done"))
        between = [n for n in seen if 0 < n < total]
        return bool(between) and max(seen) > min(between)

    wait_for(moving, what="the batch's counts to move on the list")
    assert len(seen) >= 2, seen
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
    screenshot(page, shots / "batches.png")
    page.wait_for_selector(f"{row}[data-status=completed]", timeout=WAIT_MS)
    assert count(page, row, "succeeded") == batch["counts"]["total"]
    assert count(page, row, "provider_calls") >= batch["counts"]["total"]

    # the batch: progress chart, counts, the job table with thumbnails that load
    page.click(f"{row} a")
    page.wait_for_selector("#stats svg.chart")
    assert page.locator("#summary [data-count=succeeded]").inner_text() == str(batch["counts"]["total"])
    spent = page.locator("#spent").inner_text()  # what the simulator's usage cost, from the price book
    assert spent.startswith("$") and float(spent[1:].split()[0]) > 0, spent
    loaded(page, "#jobs tr[data-job] img.thumb")
    screenshot(page, shots / "batch.png")
    page.evaluate("document.querySelector('#job-filter').scrollIntoView()")
    screenshot(page, shots / "batch-jobs.png")
    page.fill("#job-filter input[name=q]", "sku-005")
    page.click("#job-filter button[type=submit]")
    page.wait_for_selector("#jobs tr[data-job]")
    assert page.locator("#jobs tr[data-job]").count() == 3  # one per round

    # a job: its input image (decoded) beside its output text
    page.click("#jobs tr[data-job] td.id a >> nth=0")
    page.wait_for_selector("#inputs img.input-image")
    loaded(page, "#inputs img.input-image")
    answer = page.locator("#outputs .answer").first.inner_text()
    assert "[mmq simulator]" in answer
    page.click("#outputs details.raw summary")
    page.wait_for_function(
        "() => document.querySelector('#outputs details.raw pre').textContent.includes('choices')"
    )
    screenshot(page, shots / "job.png")
    full = page.locator("#inputs a.media-link").get_attribute("href")
    assert context.request.get(api + full).headers["content-type"] == "image/jpeg"

    # speech, transcription and a generated image: their sources answer with their types
    for custom_id, selector in (
        ("voice-welcome", "#outputs audio.output-audio"),
        ("call-transcript", "#inputs audio.input-audio"),
    ):
        page.goto(f"/console/batches/{batch['id']}?q={custom_id}")
        page.click("#jobs tr[data-job] td.id a")
        src = page.locator(selector).get_attribute("src")
        r = context.request.get(api + src)
        assert r.status == 200 and r.headers["content-type"].startswith("audio/"), (custom_id, r.headers)
    assert "where is my order" in page.locator("#outputs").inner_text()  # the transcript
    page.goto(f"/console/batches/{batch['id']}?q=banner-image")
    page.click("#jobs tr[data-job] td.id a")
    loaded(page, "#outputs img.output-image")
    job_url = page.url

    # the batch on the batch tier, once its provider batch has been harvested: every job done
    page.goto(f"/console/batches/{overnight['id']}")
    page.wait_for_selector("#summary[data-status=completed]", timeout=WAIT_MS)
    page.goto(f"/console/batches/{overnight['id']}")
    rows = pack_rows(page)
    assert rows and all(r["state"] == "harvested" and r["id"].startswith("batch_") for r in rows), rows
    assert sum(r["lines"] for r in rows) == 6 and all(r["created"] for r in rows)
    assert count(page, "#provider-batches", "done") == 6
    assert count(page, "#provider-batches", "provider_batch") == 0
    assert count(page, "#provider-batches", "realtime") == 0
    api_view = httpx.get(
        f"{api}/api/batches/{overnight['id']}", headers={"authorization": f"Bearer {KEY_A}"}, timeout=30
    ).json()
    listed = api_view["provider_batches"]
    assert {p["id"] for p in listed} == {r["id"] for r in rows}
    assert all(p["state"] == "harvested" and p["created_at"] and p["provider"] == "openai" for p in listed)
    # a realtime batch's page has no provider batches section
    page.goto(f"/console/batches/{batch['id']}")
    assert page.locator("#provider-batches").count() == 0

    # cancel a running batch from its page
    running = submit(api, KEY_A, catalog_lines(12, "autumn"), metadata={"source": "to-cancel.jsonl"})
    page.goto(f"/console/batches/{running['id']}")
    page.wait_for_function(
        "() => Number(document.querySelector('#summary [data-count=done]').textContent"
        ".replace(/,/g, '')) > 0",
        timeout=WAIT_MS,
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-batch")
    page.wait_for_selector("#summary[data-status=cancelled]", timeout=WAIT_MS)
    assert count(page, "#summary", "cancelled") > 0
    api_view = httpx.get(
        f"{api}/api/batches/{running['id']}", headers={"authorization": f"Bearer {KEY_A}"}, timeout=30
    ).json()
    assert api_view["status"] == "cancelled" and api_view["counts"]["cancelled"] > 0

    # a second tenant sees none of it
    other, page_b = sign_in(browser, api, KEY_B)
    assert "No batches yet" in page_b.locator("#batch-rows").inner_text()
    for url in (f"/console/batches/{batch['id']}", f"/console/batches/{running['id']}", job_url):
        response = page_b.goto(url)
        assert response.status == 404, url
        assert batch["id"] not in page_b.content() and running["id"] not in page_b.content()
    for media in (full, src):
        assert other.request.get(api + media).status == 404
    anonymous = httpx.get(api + full, timeout=30)
    assert anonymous.status_code == 401
    other.close()
    context.close()
