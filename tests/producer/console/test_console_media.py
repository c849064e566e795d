"""A job's media in the console: sniffed types, SVG and HTML never inline, thumbnails made once with
Pillow and size-capped, byte ranges for audio, and the job page showing inputs beside outputs."""

from __future__ import annotations

import io
import re

from PIL import Image

from producer.console.thumbs import SIZES, make_thumbnail, thumb_key
from tests.conftest import png_bytes
from tests.producer.console.conftest import KEY_A, NASTY, Env, Seeded


async def test_svg_and_html_results_are_attachments_never_inline(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    job = seeded.jobs["svg-result"]
    r = await a.get(f"/console/jobs/{job.id}/output/0")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"  # recorded as image/svg+xml: ignored
    assert r.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in r.headers["content-security-policy"]
    r = await a.get(f"/console/jobs/{job.id}/output/1")  # HTML bytes recorded as text/plain
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (await a.get(f"/console/jobs/{job.id}/output/0/thumb/m")).status_code == 404  # never decoded


async def test_media_are_served_with_their_sniffed_type(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    chat = seeded.jobs[NASTY]
    r = await a.get(f"/console/jobs/{chat.id}/input/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (120, 90)
    assert "content-disposition" not in r.headers
    assert r.headers["cache-control"] == "private, max-age=600"
    again = await a.get(f"/console/jobs/{chat.id}/input/0", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    speech = seeded.jobs["speech"]
    r = await a.get(f"/console/jobs/{speech.id}/output/0")
    assert r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    part = await a.get(f"/console/jobs/{speech.id}/output/0", headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["content-range"] == f"bytes 0-99/{len(r.content)}"
    transcript = seeded.jobs["transcript"]
    r = await a.get(f"/console/jobs/{transcript.id}/input/0")
    assert r.headers["content-type"] == "audio/wav"


async def test_thumbnails_are_small_webp_made_once_and_kept_in_storage(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    gen = seeded.jobs["gen-image"]
    r = await a.get(f"/console/jobs/{gen.id}/thumb")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) <= SIZES["s"] and len(r.content) < 4000
    r = await a.get(f"/console/jobs/{gen.id}/output/0/thumb/m")
    assert max(Image.open(io.BytesIO(r.content)).size) <= SIZES["m"]
    import hashlib

    key = thumb_key("s", hashlib.sha256(gen.result.files[0].key.encode()).hexdigest())
    assert await env.storage.exists(key)
    await env.storage.put(key, png_bytes((1, 2, 3), (8, 8)))  # what is stored is served, not remade
    r = await a.get(f"/console/jobs/{gen.id}/thumb")
    assert r.headers["content-type"] == "image/png"  # sniffed from the bytes
    chat = seeded.jobs[NASTY]
    assert (await a.get(f"/console/jobs/{chat.id}/thumb")).headers["content-type"] == "image/webp"
    assert (await a.get(f"/console/jobs/{seeded.jobs['speech'].id}/thumb")).status_code == 404


def test_thumbnails_refuse_images_over_the_pixel_limit_and_keep_animations_to_one_frame():
    big = png_bytes((9, 9, 9), (400, 300))
    try:
        make_thumbnail(big, 96, max_pixels=1000)
    except Exception as e:
        assert "over the limit" in str(e)
    else:
        raise AssertionError("an image over the pixel limit was decoded")
    frames = [Image.new("RGB", (50, 40), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    thumb = Image.open(io.BytesIO(make_thumbnail(buf.getvalue(), 96, max_pixels=10_000)))
    assert thumb.format == "WEBP" and getattr(thumb, "n_frames", 1) == 1


async def test_the_job_page_shows_inputs_beside_outputs(env: Env, seeded: Seeded):
    a = await env.client(KEY_A)
    chat = seeded.jobs[NASTY]
    html = (await a.get(f"/console/jobs/{chat.id}")).text
    inputs, outputs = html.split('id="inputs"')[1].split('id="outputs"')
    assert f'src="/console/jobs/{chat.id}/input/0/thumb/m"' in inputs
    assert f'href="/console/jobs/{chat.id}/input/0"' in inputs  # opens full size
    assert "A red square." in outputs
    assert re.search(r"<td class=\"num\">500</td>", html) and "Waited before" in html  # the attempt trail
    assert "total_tokens" in html and "No routing config" in html
    gen = (await a.get(f"/console/jobs/{seeded.jobs['gen-image'].id}")).text
    assert 'class="media output-image"' in gen
    speech = (await a.get(f"/console/jobs/{seeded.jobs['speech'].id}")).text
    assert '<audio controls preload="metadata" src="/console/jobs/' in speech and "hello there" in speech
    transcript = (await a.get(f"/console/jobs/{seeded.jobs['transcript'].id}")).text
    assert "1.25s" in transcript and 'class="input-audio"' in transcript
    raw = await a.get(f"/console/jobs/{chat.id}/raw/result")
    assert raw.headers["content-type"] == "application/json" and raw.json()["choices"]


async def test_cached_from_links_only_to_a_job_of_the_same_tenant(env: Env, seeded: Seeded):
    from tests.producer.console.conftest import KEY_B, end_job, job_records, line, submit

    payer = seeded.jobs["gen-image"]
    for key, cid in ((KEY_A, "hit-a"), (KEY_B, "hit-b")):
        batch = await submit(env, key, [line(cid, "/v1/images/generations", {"prompt": "p"})])
        [job] = await job_records(env, batch["id"])
        await end_job(env, job, body={"data": []}, attempts=[], cached_from=payer.id)
    [hit_a] = [j for j in await _all(env, "tenant-a") if j.custom_id == "hit-a"]
    page = (await (await env.client(KEY_A)).get(f"/console/jobs/{hit_a.id}")).text
    assert f'<a href="/console/jobs/{payer.id}" class="mono" id="cached-from">' in page
    [hit_b] = [j for j in await _all(env, "tenant-b") if j.custom_id == "hit-b"]
    page = (await (await env.client(KEY_B)).get(f"/console/jobs/{hit_b.id}")).text
    assert 'id="cached-from"' not in page and "Answered from the cache" in page


async def _all(env: Env, tenant: str):
    from tests.producer.console.conftest import job_records

    out = []
    for batch_id in await env.records.list_batches(tenant, limit=100):
        out += await job_records(env, batch_id)
    return out


async def test_documents_are_named_links_with_a_text_preview_and_pdfs_are_attachments(
    env: Env, seeded: Seeded
):
    from tests.producer.console.conftest import PDF

    a = await env.client(KEY_A)
    job = seeded.jobs["documents"]
    html = (await a.get(f"/console/jobs/{job.id}")).text
    assert f'<a href="/console/jobs/{job.id}/input/0">' in html and NASTY not in html
    assert "sku-001,&lt;b&gt;red mug&lt;/b&gt;" in html  # the CSV's first lines, as text
    r = await a.get(f"/console/jobs/{job.id}/input/0")
    assert r.content == PDF and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("attachment;") and r.headers[
        "content-disposition"
    ].endswith('.pdf"')
    r = await a.get(f"/console/jobs/{job.id}/input/1")
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and "red mug" in r.text
    assert (await a.get(f"/console/jobs/{job.id}/input/0/thumb/m")).status_code == 404
