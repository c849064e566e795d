"""Lua scripts, loaded from mmq/lua/*.lua.

Each file starts with its KEYS/ARGV contract. A line `-- include: NAME` pulls in mmq/lua/NAME.lua (shared
functions such as `batch_end`) before the script's own text, so a rule like "when does a batch end"
is written once and every script that can end a batch uses it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

from mmq import round_trips

_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: (\w+)\s*$", re.M)


@functools.cache
def source(name: str) -> str:
    """The text of mmq/lua/{name}.lua with its includes in front."""
    text = (_DIR / f"{name}.lua").read_text()
    included = [source(dep) for dep in _INCLUDE.findall(text)]
    return "\n".join([*included, text])


# sha → text of every script loaded here: a pipeline's EVALSHA that Redis did not know is re-sent as EVAL
_TEXTS: dict[str, str] = {}


class Lua:
    """One script of mmq/lua. Called alone it runs as EVALSHA (EVAL once after a Redis restart) through
    mmq/round_trips.py, without redis-py's command layer (its Script object checks its client's type
    against typing Protocols on every call). Queued on a pipeline it goes as EVALSHA too; `execute`
    runs such a pipeline and re-sends, as EVAL, only a script Redis did not know (NOSCRIPT: after a
    restart or SCRIPT FLUSH; nothing ran). redis-py's own pipeline scripts cost a SCRIPT EXISTS round
    trip before every execute, and an EVAL of the text costs its bytes and a hash of them in Redis every
    time."""

    def __init__(self, redis: Any, name: str, text: str | None = None) -> None:
        self.name = name
        self.text = text if text is not None else source(name)
        self._redis = redis
        self.sha: str = hashlib.sha1(self.text.encode()).hexdigest()  # Redis' name for it (SCRIPT LOAD)
        _TEXTS[self.sha] = self.text

    async def __call__(self, keys: list[str], args: list[Any] | None = None) -> Any:
        """EVALSHA in the next round trip, sent as EVAL once if Redis does not know the script (after
        a restart or SCRIPT FLUSH: nothing ran). The reply as Redis sent it; an error reply is raised."""
        pool = self._redis.connection_pool
        tail = (len(keys), *keys, *(args or ()))
        [reply] = await round_trips.send(pool, [("EVALSHA", self.sha, *tail)])
        if isinstance(reply, NoScriptError):
            [reply] = await round_trips.send(pool, [("EVAL", self.text, *tail)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def queue(self, pipe: Any, keys: list[str], args: list[Any] | None = None) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *(args or []))


def register(redis: Any, name: str) -> Lua:
    return Lua(redis, name)


async def execute(pipe: Any) -> list[Any]:
    """Run a pipeline (transaction=False) that may hold queued scripts, in one round trip, and return the
    replies as Redis sent them: a script's answer, a count; no redis-py reply conversion (no caller of
    this reads more). Each EVALSHA that found no script is sent again as EVAL (it did not run; every
    other command ran once), after the pipeline, so it runs after the commands queued behind it: a
    pipeline whose order matters across scripts must not rely on it. Raises the first other error.

    The commands go through mmq/round_trips.py: packed on one pooled connection, in one round trip with
    whatever else this process sends in the same turn of the event loop."""
    stack = pipe.command_stack
    if not stack:
        return []
    sent = [args for args, _options in stack]
    pipe.command_stack = []  # sent: the pipeline may be used again
    results = await round_trips.send(pipe.connection_pool, sent)
    for i, result in enumerate(results):
        if isinstance(result, NoScriptError) and sent[i][0] == "EVALSHA" and sent[i][1] in _TEXTS:
            [results[i]] = await round_trips.send(
                pipe.connection_pool, [("EVAL", _TEXTS[sent[i][1]], *sent[i][2:])]
            )
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
