"""Prompt templates as users run them: a real `mmq api` process, a real worker, real Redis, the simulator;
and the `mmq template` CLI."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from PIL import Image

from mmq.request_models import BLOB_SCHEME
from tests.conftest import data_url, png_bytes
from tests.e2e.conftest import KEY_A, KEY_B, run_mmq
from tests.e2e.test_api_e2e import client, wait_done

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PRODUCTS = {"sku-1": "red kettle", "sku-2": "oak desk", "sku-4": "blue lamp", "sku-5": "wool rug"}


def caption_template(image: bytes, text: str = "Describe the {{product}} for the shop.") -> dict:
    return {
        "name": "shop-caption",
        "description": "one caption per product, the brand's photo frame in every call",
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}},
                ],
            }
        ],
        "parameters": {"temperature": 0.2, "max_tokens": 200},
    }


def answer(c: httpx.Client, job: dict) -> str:
    return c.get(job["result"]["url"]).json()["choices"][0]["message"]["content"]


async def test_template_with_an_image_runs_a_csv_over_http(api, stores):
    a, b, anonymous = client(api, KEY_A), client(api, KEY_B), client(api, None)
    redis, _, storage = stores
    green = png_bytes((20, 180, 40), (200, 100))

    saved = a.post("/api/templates", json=caption_template(green))
    assert saved.status_code == 201, saved.text
    template = saved.json()
    assert template["variables"] == ["product"] and template["created"]
    [ref] = template["blobs"]
    assert template["messages"][0]["content"][1]["image_url"]["url"] == ref
    assert await storage.get(ref.removeprefix(BLOB_SCHEME)) == green
    stored = await redis.hget("mmq:templates:tenant-a:shop-caption", template["version"])
    assert stored and b"base64" not in stored and len(stored) < 2000  # Redis keeps the ref, not the image
    again = a.post("/api/templates", json=caption_template(green))
    assert again.status_code == 200 and again.json()["version"] == template["version"]

    rows = "id,product,comment\n" + "".join(
        f"{sku},{PRODUCTS.get(sku, '')},extra column\n"
        for sku in ("sku-1", "sku-2", "sku-3", "sku-4", "sku-5")
    )
    r = a.post("/api/templates/shop-caption/batches", content=rows, headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["template"] == f"shop-caption@{template['version']}"
    batch = wait_done(a, r.json()["id"])
    counts = batch["counts"]
    assert (counts["total"], counts["succeeded"], counts["failed"]) == (5, 4, 1), counts
    assert counts["provider_calls"] == 4

    jobs = {j["custom_id"]: j for j in a.get(f"/api/batches/{batch['id']}/jobs").json()["data"]}
    for sku, product in PRODUCTS.items():
        text = answer(a, jobs[sku])
        assert f"Describe the {product} for the shop." in text, text  # the simulator echoes the prompt
        assert "green" in text  # and describes the template's image, which reached the provider
    failed = jobs["sku-3"]
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == "line 4: missing variable {{product}} in row 3"

    # list, fetch, versions; a second version, and a run pinned to the first one (JSONL rows)
    assert [t["name"] for t in a.get("/api/templates").json()["data"]] == ["shop-caption"]
    v2 = a.post("/api/templates", json=caption_template(green, "Sell the {{product}} now.")).json()
    assert v2["created"] and v2["version"] != template["version"] and v2["blobs"] == [ref]
    versions = a.get("/api/templates/shop-caption/versions").json()["data"]
    assert [(v["version"], v["latest"]) for v in versions] == [
        (template["version"], False),
        (v2["version"], True),
    ]
    assert a.get("/api/templates/shop-caption").json()["version"] == v2["version"]
    pinned = a.get("/api/templates/shop-caption", params={"version": template["version"]}).json()
    assert pinned["messages"][0]["content"][0]["text"] == "Describe the {{product}} for the shop."
    run = a.post(
        f"/api/templates/shop-caption@{template['version']}/batches",
        content='{"custom_id": "j1", "product": "tin cup"}\n',
        headers={"content-type": "application/jsonl"},
    )
    assert run.status_code == 201, run.text
    done = wait_done(a, run.json()["id"])
    [job] = a.get(f"/api/batches/{done['id']}/jobs").json()["data"]
    assert "Describe the tin cup for the shop." in answer(a, job)

    # refused before any batch exists
    bad = a.post(
        "/api/templates/shop-caption/batches", content="a,a\n1,2\n", headers={"content-type": "text/csv"}
    )
    assert bad.status_code == 422 and "header" in bad.text
    other = a.post("/api/templates/shop-caption/batches", content="x", headers={"content-type": "text/plain"})
    assert other.status_code == 415
    assert a.post("/api/templates", json={"name": "x", "model": "m"}).status_code == 422

    # another tenant sees nothing of tenant A's templates; no key, no access
    for path in ("/api/templates/shop-caption", "/api/templates/shop-caption/versions"):
        assert b.get(path).status_code == 404, path
        assert anonymous.get(path).status_code == 401, path
    assert b.get("/api/templates").json()["data"] == []
    stolen = b.post("/api/templates/shop-caption/batches", content=rows, headers={"content-type": "text/csv"})
    assert stolen.status_code == 404
    copy = caption_template(green)
    copy["messages"][0]["content"][1]["image_url"]["url"] = ref  # tenant A's blob, named by tenant B
    refused = b.post("/api/templates", json=copy)
    assert refused.status_code == 422 and "internal" in refused.text


mmq = run_mmq


def test_cli_template_save_list_show_and_run(mmq_env, worker_process, tmp_path):
    orange = png_bytes((240, 130, 20), (90, 90))
    (tmp_path / "caption.json").write_text(json.dumps({k: v for k, v in caption_template(orange).items()}))
    saved = mmq(
        "template", "save", "caption.json", "--name", "cap", "--tenant", "ops", env=mmq_env, cwd=tmp_path
    )
    assert saved.returncode == 0, saved.stderr
    ref = saved.stdout.strip()
    assert ref.startswith("cap@") and "variables: product" in saved.stderr

    listed = mmq("template", "list", "--tenant", "ops", env=mmq_env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith(ref + "\t/v1/chat/completions")
    assert mmq("template", "list", "--tenant", "else", env=mmq_env, cwd=tmp_path).stdout == ""
    shown = mmq("template", "show", ref, "--tenant", "ops", env=mmq_env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    shown_json = json.loads(shown.stdout)
    assert shown_json["latest"] and shown_json["blobs"][0].startswith(BLOB_SCHEME)
    # the shown JSON saves back as the same version
    (tmp_path / "shown.json").write_text(shown.stdout)
    resaved = mmq("template", "save", "shown.json", "--tenant", "ops", env=mmq_env, cwd=tmp_path)
    assert resaved.stdout.strip() == ref, resaved.stderr
    missing = mmq("template", "show", "nope", "--tenant", "ops", env=mmq_env, cwd=tmp_path)
    assert missing.returncode != 0 and "no template nope" in missing.stderr

    rows = [
        {"custom_id": "a", "product": "copper pan"},
        {"custom_id": "b"},
        {"id": "c", "product": "steel pot"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = mmq(
        "template", "run", "cap", "rows.jsonl", "--tenant", "ops", "--out", "out", env=mmq_env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith("batch_")
    with (tmp_path / "out" / "results.csv").open(newline="") as f:
        results = {r["custom_id"]: r for r in csv.DictReader(f)}
    assert results["a"]["status"] == "succeeded" and "copper pan" in results["a"]["text"]
    assert "orange" in results["a"]["text"]
    assert results["c"]["status"] == "succeeded" and "steel pot" in results["c"]["text"]
    assert results["b"]["status"] == "failed" and "{{product}}" in results["b"]["error"]
    assert "row 2" in results["b"]["error"]
    assert len((tmp_path / "out" / "output.jsonl").read_text().splitlines()) == 3

    # an image-generation template over CSV rows: one PNG per row
    poster = {"name": "poster", "url": "/v1/images/generations", "prompt": "a poster of {{subject}}"}
    (tmp_path / "poster.json").write_text(json.dumps({**poster, "parameters": {"size": "128x128"}}))
    assert mmq("template", "save", "poster.json", env=mmq_env, cwd=tmp_path).returncode == 0
    (tmp_path / "subjects.csv").write_text("id,subject\nvan,a red van\nboat,a small boat\n")
    run = mmq("template", "run", "poster", "subjects.csv", "--out", "art", env=mmq_env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    pngs = sorted(p.name for p in (tmp_path / "art" / "files").iterdir())
    assert pngs == ["boat.png", "van.png"]
    assert Image.open(io.BytesIO((tmp_path / "art" / "files" / "van.png").read_bytes())).size == (128, 128)
