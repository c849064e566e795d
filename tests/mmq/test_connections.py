"""Commands packed in C by mmq's connections are byte for byte what redis-py's Python packer sends."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.exceptions import DataError

from mmq.connections import PackedConnection

COMMANDS = [
    ("SET", "k", "é", "PX", 1500),
    ("EVALSHA", "a" * 40, 2, "mmq:job:1", b"raw\x00bytes", 2.5, -3),
    ("CLIENT SETNAME", "mmq-worker"),  # literal arguments inside the command name are split
    (b"HSET", b"h", "f", ""),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_same_bytes_as_redis_py(command):
    python = b"".join(redis.asyncio.Connection().pack_command(*command))
    assert b"".join(PackedConnection().pack_command(*command)) == python


def test_a_value_redis_cannot_hold_is_a_data_error():
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", None)


def test_a_pipeline_packs_every_command():
    conn = PackedConnection()
    packed = b"".join(conn.pack_commands([("SET", "a", 1), ("GET", "a")]))
    assert packed == b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
