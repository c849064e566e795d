"""The Google dialect's auth: which header each surface reads the key from (the guard's key reader).

AI Studio takes `x-goog-api-key`, `?key=` or an OAuth bearer (studio_key); Vertex takes
`Authorization: Bearer` (the guard's bearer_key). Any value works. The key becomes the guard's
rate-limit identity.
"""

from __future__ import annotations

from starlette.requests import Request

from mmq.simulator.guard import bearer_key


def studio_key(request: Request) -> str:
    """AI Studio's key reader: x-goog-api-key or ?key= (either wins over a bearer token), else OAuth."""
    key = (request.headers.get("x-goog-api-key") or request.query_params.get("key") or "").strip()
    return key or bearer_key(request)
