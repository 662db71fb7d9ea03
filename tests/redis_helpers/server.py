"""A Redis for the tests: the configured one when it answers, else a throwaway server.

The tests talk to the Redis at ``ASYNCSIGNALS_TEST_REDIS`` (default
``redis://127.0.0.1:6379/0``). When nothing answers there, the session starts
``redis-server`` on a free port, keeping nothing on disk, and stops it at the
end; when ``redis-server`` is not installed, the error says how to install it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator
from contextlib import contextmanager

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONFIGURED_URL = os.environ.get("ASYNCSIGNALS_TEST_REDIS", "redis://127.0.0.1:6379/0")
INSTALL_HINT = (
    "install Redis (Debian/Ubuntu: apt install redis-server; macOS: brew install redis), "
    "or point ASYNCSIGNALS_TEST_REDIS at a running Redis"
)
# How long a server just started may take to answer before the session gives up.
START_SECONDS = 10.0


class RedisUnavailableError(RuntimeError):
    """No Redis answers and none can be started."""


def server_pid(url: str) -> int | None:
    """The process id of the Redis answering at ``url``, or None when none answers."""
    connection = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        info: dict[str, object] = connection.info("server")
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return None
    else:
        pid = info["process_id"]
        assert isinstance(pid, int)
        return pid
    finally:
        connection.close()


def answers(url: str) -> bool:
    """Whether a Redis answers PING at ``url``."""
    connection = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(connection.ping())
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return False
    finally:
        connection.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(port: int) -> list[str]:
    """The command that runs a throwaway ``redis-server`` on ``port``, keeping nothing on disk."""
    server = shutil.which("redis-server")
    if server is None:
        raise RedisUnavailableError(f"redis-server is not installed: {INSTALL_HINT}")
    return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


@contextmanager
def throwaway_server() -> Generator[str, None, None]:
    """Run ``redis-server`` on a free port; yield its URL; stop it on exit."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            server_command(port), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            # Ours, not another server that took the port between the two calls.
            while server_pid(url) != process.pid:
                if process.poll() is not None:
                    log.seek(0)
                    said = log.read().decode(errors="replace").strip()
                    raise RedisUnavailableError(f"redis-server exited at start: {said}")
                if time.monotonic() > deadline:
                    raise RedisUnavailableError(f"redis-server did not answer on port {port}")
                time.sleep(0.02)
            yield url
        finally:
            process.kill()
            process.wait()


@contextmanager
def redis_for_tests(configured_url: str = CONFIGURED_URL) -> Generator[str, None, None]:
    """Yield the URL of a Redis that answers: the configured one, else a throwaway one."""
    if answers(configured_url):
        yield configured_url
        return
    with throwaway_server() as url:
        yield url
