"""Console sign-in: the session cookie, the login token, CSRF on every POST, bounded form bodies, and
the API's own key rules left as they were."""

from __future__ import annotations

import httpx

from producer.auth import hash_key
from producer.console.session import COOKIE, MAX_FORM_BYTES
from tests.producer.console.conftest import BASE, KEY_A, KEY_B, Env, Seeded, csrf_of, sign_in


async def test_pages_send_a_signed_out_browser_to_sign_in_and_parts_answer_401(env: Env, seeded: Seeded):
    c = await env.client()
    r = await c.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    r = await c.get(f"/console/batches/{seeded.batch_id}?status=failed")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login?next=%2Fconsole%2Fbatches%2F")
    for url in (
        f"/console/batches/{seeded.batch_id}/part/summary",
        f"/console/jobs/{seeded.jobs['gen-image'].id}/output/0",
        f"/console/batches/{seeded.batch_id}/output.jsonl",
    ):
        assert (await c.get(url, headers={"accept": "*/*"})).status_code == 401, url


async def test_sign_in_sets_an_httponly_strict_cookie_and_goes_back_where_asked(env: Env, seeded: Seeded):
    c = await env.client()
    r = await sign_in(c, KEY_A, next_=f"/console/batches/{seeded.batch_id}")
    assert r.status_code == 303 and r.headers["location"] == f"/console/batches/{seeded.batch_id}"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert KEY_A not in cookie  # the cookie holds a session id, never the key
    page = await c.get("/console/")
    assert page.status_code == 200 and seeded.batch_id in page.text and "tenant-a" in page.text


async def test_unknown_keys_and_foreign_redirects_are_refused(env: Env):
    c = await env.client()
    r = await sign_in(c, "mmq_not_a_key")
    assert r.status_code == 401 and "not an mmq API key" in r.text
    assert COOKIE not in c.cookies
    for evil in ("//evil.test/x", "https://evil.test/", "/console\\@evil.test", "/api/batches"):
        r = await sign_in(await env.client(), KEY_A, next_=evil)
        assert r.status_code == 303 and r.headers["location"] == "/console/", evil


async def test_sign_in_needs_the_login_token_and_this_origin(env: Env):
    c = await env.client()
    await c.get("/console/login")
    r = await c.post("/console/login", data={"key": KEY_A, "login_token": "forged"})
    assert r.status_code == 403
    # a bare POST from another site: no login cookie at all (SameSite=Strict keeps it home)
    bare = httpx.AsyncClient(transport=env.transport, base_url=BASE)
    env.clients.append(bare)
    assert (await bare.post("/console/login", data={"key": KEY_A, "login_token": "x"})).status_code == 403
    page = await c.get("/console/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    r = await c.post(
        "/console/login",
        data={"key": KEY_A, "login_token": token},
        headers={"origin": "https://evil.test", "sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 403


async def test_every_post_needs_the_session_csrf_token_and_this_origin(env: Env, seeded: Seeded):
    c = await env.client(KEY_A)
    page = await c.get(f"/console/batches/{seeded.batch_id}")
    token = csrf_of(page.text)
    cancel = f"/console/batches/{seeded.batch_id}/cancel"
    assert (await c.post(cancel)).status_code == 403
    assert (await c.post(cancel, data={"csrf": "wrong"})).status_code == 403
    other = await env.client(KEY_A)  # another session of the same tenant has another token
    assert csrf_of((await other.get("/console/")).text) != token
    r = await c.post(cancel, data={"csrf": token}, headers={"origin": "https://evil.test"})
    assert r.status_code == 403
    r = await c.post(cancel, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    assert (await env.records.get_batch(seeded.batch_id)).status.value == "in_progress"
    r = await c.post(cancel, data={"csrf": token}, headers={"origin": BASE, "sec-fetch-site": "same-origin"})
    assert r.status_code == 303
    assert (await env.records.get_batch(seeded.batch_id)).status.value in ("cancelled", "cancelling")
    # the token in a header does as well as in the form
    retry = f"/console/batches/{seeded.batch_id}/retry-failed"
    assert (await c.post(retry, headers={"x-csrf-token": token})).status_code == 303


async def test_form_bodies_are_bounded(env: Env, seeded: Seeded):
    c = await env.client(KEY_A)
    token = csrf_of((await c.get("/console/")).text)
    big = {"csrf": token, "pad": "x" * (MAX_FORM_BYTES + 1)}
    assert (await c.post(f"/console/batches/{seeded.batch_id}/cancel", data=big)).status_code == 413
    anon = await env.client()
    await anon.get("/console/login")
    r = await anon.post(
        "/console/login",
        content=b"key=" + b"x" * (10 * MAX_FORM_BYTES),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code in (403, 413)


async def test_sign_out_ends_the_session_and_a_removed_key_ends_its_sessions(env: Env):
    c = await env.client(KEY_A)
    token = csrf_of((await c.get("/console/")).text)
    sid = c.cookies[COOKIE]
    assert (await c.post("/console/logout", data={"csrf": "nope"})).status_code == 403
    r = await c.post("/console/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert r.headers["clear-site-data"] == '"cache"'
    c.cookies.set(COOKIE, sid, path="/console")  # replaying the old cookie opens nothing
    assert (await c.get("/console/")).status_code == 303
    d = await env.client(KEY_B)
    assert (await d.get("/console/")).status_code == 200
    del env.app.state.tenant_keys[hash_key(KEY_B)]
    assert (await d.get("/console/")).status_code == 303


async def test_the_api_keeps_its_bearer_rules_and_ignores_console_cookies(env: Env):
    c = await env.client(KEY_A)
    assert c.cookies.get(COOKIE)
    # a console session opens no API route: /api stays bearer-only, and the guard still refuses bodies
    assert (await c.get("/api/batches")).status_code == 401
    r = await c.post(
        "/api/batches", json={"requests": []}, headers={"cookie": f"{COOKIE}={c.cookies[COOKIE]}"}
    )
    assert r.status_code == 401
    r = await c.get("/api/batches", headers={"cookie": f"{COOKIE}={c.cookies[COOKIE]}"})
    assert r.status_code == 401
