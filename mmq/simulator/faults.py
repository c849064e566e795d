"""Scripted faults for tests: "answer the next N requests with status S (and Retry-After R)".

Random error rates prove averages; a test of a circuit breaker or a Retry-After needs to say exactly
which request fails. POST /sim/faults {"status": 503, "count": 5, "retry_after_s": 2} queues a fault,
DELETE /sim/faults clears them; GET /sim/faults lists arrival times of API requests (epoch seconds)
and the SHA-256 prefixes of the API keys that called. A fault's message may contain "{key}": the
caller's key is echoed there, as some providers do in 401s, to test that nothing stores it.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import ApiError, json_response


class Fault(BaseModel):
    status: int = Field(ge=400, le=599)
    count: int | None = Field(default=1, ge=1)  # None = until cleared
    retry_after_s: float | None = Field(default=None, ge=0)
    code: str | None = None
    message: str = "injected by the mmq simulator's fault script"


@dataclass
class _Pending:
    fault: Fault
    left: int | None


class FaultScript:
    def __init__(self) -> None:
        self._queue: deque[_Pending] = deque()
        self.arrivals: deque[float] = deque(maxlen=10_000)
        # which API keys called, as hash prefixes: tests prove a virtual key was used without storing it
        self.key_hashes: set[str] = set()

    def add(self, fault: Fault) -> None:
        self._queue.append(_Pending(fault, fault.count))

    def clear(self) -> None:
        self._queue.clear()
        self.arrivals.clear()
        self.key_hashes.clear()

    def next_error(self, key: str | None = None) -> ApiError | None:
        """Called once per API request: records its arrival, returns the scripted error if one is due."""
        self.arrivals.append(time.time())
        if key:
            self.key_hashes.add(key_hash(key))
        if not self._queue:
            return None
        pending = self._queue[0]
        if pending.left is not None:
            pending.left -= 1
            if pending.left <= 0:
                self._queue.popleft()
        f = pending.fault
        message = f.message.replace("{key}", key or "")
        headers: dict[str, str] = {}
        if f.retry_after_s is not None:
            headers["retry-after"] = f"{f.retry_after_s:g}"
        kind = (
            "server_error" if f.status >= 500 else "requests" if f.status == 429 else "invalid_request_error"
        )
        return ApiError(f.status, message, type=kind, code=f.code, headers=headers)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


async def faults_endpoint(request: Request) -> Response:
    script: FaultScript = request.app.state.sim.faults
    if request.method == "DELETE":
        script.clear()
    elif request.method == "POST":
        try:
            script.add(Fault.model_validate(await request.json()))
        except ValueError as e:
            return ApiError(400, f"bad fault: {e}").response()
    return json_response(
        {
            "arrivals": list(script.arrivals),
            "pending": len(script._queue),
            "key_hashes": sorted(script.key_hashes),
        }
    )
