"""Lua scripts, loaded from mmq/lua/*.lua.

Each file starts with its KEYS/ARGV contract. A line `-- include: NAME` pulls in mmq/lua/NAME.lua (shared
functions such as `batch_end`) before the script's own text, so a rule like "when does a batch end"
is written once and every script that can end a batch uses it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: (\w+)\s*$", re.M)


@functools.cache
def source(name: str) -> str:
    """The text of mmq/lua/{name}.lua with its includes in front."""
    text = (_DIR / f"{name}.lua").read_text()
    included = [source(dep) for dep in _INCLUDE.findall(text)]
    return "\n".join([*included, text])


class Lua:
    """One script of mmq/lua. Called alone it runs as EVALSHA (EVAL once after a Redis restart); queued on
    a pipeline it goes as EVAL with its text, because redis-py checks a pipeline's scripts with an extra
    SCRIPT EXISTS round trip before each execute, and the point of a pipeline is one round trip. Redis
    caches compiled scripts by their text's SHA, so an EVAL of a known script is not compiled again."""

    def __init__(self, redis: Any, name: str) -> None:
        self.name = name
        self.text = source(name)
        self._script = redis.register_script(self.text)

    async def __call__(self, keys: list[str], args: list[Any] | None = None) -> Any:
        return await self._script(keys=keys, args=args or [])

    def queue(self, pipe: Any, keys: list[str], args: list[Any] | None = None) -> None:
        pipe.eval(self.text, len(keys), *keys, *(args or []))


def register(redis: Any, name: str) -> Lua:
    return Lua(redis, name)
