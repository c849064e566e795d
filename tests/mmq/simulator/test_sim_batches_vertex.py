"""The simulator's Cloud Storage JSON API and Vertex AI batch prediction control plane, in raw HTTP: the
object calls and their error shapes, the job's refusals, its output layout and its list filter."""

from __future__ import annotations

import json

import httpx

from tests.mmq.simulator.batch_helpers import wait_until

FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3, "batch_finalize_s": 0.05}
JOBS = "/v1/projects/p1/locations/us-central1/batchPredictionJobs"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def client(sim: httpx.AsyncClient, token: str | None = "ya29.t") -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim", headers=headers
    )


async def put(api: httpx.AsyncClient, name: str, data: bytes) -> httpx.Response:
    return await api.post(
        "/upload/storage/v1/b/bkt/o", params={"uploadType": "media", "name": name}, content=data
    )


def job_body(model: str, inputs: list[str], out: str = "gs://bkt/out", name: str = "d") -> dict[str, object]:
    return {
        "displayName": name,
        "model": model,
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": inputs}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": out}},
    }


async def test_gcs_objects_upload_list_pages_read_and_delete(make_sim) -> None:
    sim = make_sim()
    async with client(sim) as api:
        for name in ("a/2.jsonl", "a/1.jsonl", "b/x"):
            resp = await put(api, name, b'{"x": 1}\n')
            assert resp.status_code == 200 and resp.json()["name"] == name and resp.json()["size"] == "9"
        page = (await api.get("/storage/v1/b/bkt/o", params={"prefix": "a/", "maxResults": 1})).json()
        assert [i["name"] for i in page["items"]] == ["a/1.jsonl"] and page["nextPageToken"] == "a/1.jsonl"
        rest = await api.get(
            "/storage/v1/b/bkt/o", params={"prefix": "a/", "pageToken": page["nextPageToken"]}
        )
        assert [i["name"] for i in rest.json()["items"]] == [
            "a/2.jsonl"
        ] and "nextPageToken" not in rest.json()
        media = await api.get("/storage/v1/b/bkt/o/a%2F1.jsonl", params={"alt": "media"})
        assert media.content == b'{"x": 1}\n'
        assert (await api.delete("/storage/v1/b/bkt/o/a%2F1.jsonl")).status_code == 204
        gone = await api.get("/storage/v1/b/bkt/o/a%2F1.jsonl", params={"alt": "media"})
        assert gone.status_code == 404 and gone.json()["error"]["errors"][0]["reason"] == "notFound"
        assert (await api.get("/storage/v1/b/bkt/o", params={"prefix": "zzz"})).json() == {
            "kind": "storage#objects"
        }
        assert (
            await api.post("/upload/storage/v1/b/bkt/o", params={"uploadType": "resumable"})
        ).status_code == 400
    async with client(sim, token=None) as anonymous:
        refused = await anonymous.get("/storage/v1/b/bkt/o")
        assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_vertex_jobs_refuse_bad_bodies_and_fail_on_bad_input(make_sim) -> None:
    sim = make_sim(**FAST)
    async with client(sim) as api:
        bad_model = await api.post(JOBS, json=job_body("models/gemini-2.5-flash", ["gs://bkt/in"]))
        assert bad_model.status_code == 400 and bad_model.json()["error"]["status"] == "INVALID_ARGUMENT"
        unknown = await api.post(
            JOBS, json={**job_body("publishers/google/models/g", ["gs://bkt/in"]), "x": 1}
        )
        assert unknown.status_code == 400 and "Unknown name" in unknown.json()["error"]["message"]
        missing = await api.post(
            JOBS, json=job_body("publishers/google/models/gemini-2.5-flash", ["gs://bkt/no"])
        )
        assert missing.status_code == 200
        job_id = missing.json()["name"].rsplit("/", 1)[-1]
        failed = await wait_until(
            lambda: api.get(f"{JOBS}/{job_id}"), lambda r: r.json()["state"] in TERMINAL
        )
        assert (
            failed.json()["state"] == "JOB_STATE_FAILED"
            and "No such object" in failed.json()["error"]["message"]
        )
        assert (await api.get(f"{JOBS}/{job_id}".replace("p1", "p2"))).status_code == 404


async def test_vertex_gemini_output_layout_and_display_name_filter(make_sim) -> None:
    sim = make_sim(**FAST)
    async with client(sim) as api:
        request = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "labels": {"mmq_job": "j1"}}
        await put(api, "in.jsonl", (json.dumps({"request": request}) + "\n").encode())
        model = "publishers/google/models/gemini-2.5-flash"
        for name in ("mmq_pack=a", "mmq_pack=b"):
            assert (
                await api.post(JOBS, json=job_body(model, ["gs://bkt/in.jsonl"], name=name))
            ).status_code == 200
        listed = (await api.get(JOBS, params={"filter": 'display_name="mmq_pack=a"'})).json()
        assert [j["displayName"] for j in listed["batchPredictionJobs"]] == ["mmq_pack=a"]
        job_id = listed["batchPredictionJobs"][0]["name"].rsplit("/", 1)[-1]
        done = await wait_until(lambda: api.get(f"{JOBS}/{job_id}"), lambda r: r.json()["state"] in TERMINAL)
        job = done.json()
        assert job["state"] == "JOB_STATE_SUCCEEDED" and job["completionStats"]["successfulCount"] == "1"
        out_dir = job["outputInfo"]["gcsOutputDirectory"]
        assert out_dir.startswith("gs://bkt/out/prediction-model-")
        name = out_dir.removeprefix("gs://bkt/") + "/predictions.jsonl"
        row = json.loads(
            (await api.get(f"/storage/v1/b/bkt/o/{name.replace('/', '%2F')}", params={"alt": "media"})).text
        )
        assert (
            row["status"] == ""
            and row["request"] == request
            and row["response"]["usageMetadata"]["totalTokenCount"] > 0
        )
        assert sim.app.state.stats.batch_billed_ids == {"j1": 2}  # one line in each of the two jobs
        assert (await api.post(f"{JOBS}/{job_id}:cancel")).status_code == 400  # ended: not cancellable
