"""The Redis the tests use: the configured one when it answers, else a throwaway server."""

from __future__ import annotations

import pytest
from redis_helpers import server
from redis_helpers.server import RedisUnavailableError, answers, free_port, redis_for_tests


def test_nothing_answering_starts_a_throwaway_server_and_stops_it() -> None:
    """With nothing at the configured URL, a server answers elsewhere, and is gone after."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with redis_for_tests(nowhere) as url:
        assert url != nowhere
        assert answers(url)
    assert not answers(url)


def test_a_configured_redis_that_answers_is_used_as_is() -> None:
    """A Redis answering at the configured URL is the one the tests get."""
    with redis_for_tests(f"redis://127.0.0.1:{free_port()}/0") as running:
        with redis_for_tests(running) as url:
            assert url == running
        assert answers(running)


def test_a_missing_redis_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No redis-server on PATH: the error names the Debian and macOS install commands."""
    monkeypatch.setenv("PATH", "")
    with (
        pytest.raises(RedisUnavailableError, match="apt install redis-server") as caught,
        redis_for_tests(f"redis://127.0.0.1:{free_port()}/0"),
    ):
        pass
    assert "brew install redis" in str(caught.value)


def test_a_server_that_cannot_start_reports_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port taken by another server: the start fails with redis-server's own words."""
    with redis_for_tests(f"redis://127.0.0.1:{free_port()}/0") as running:
        taken = int(running.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setattr(server, "free_port", lambda: taken)
        with (
            pytest.raises(RedisUnavailableError, match=r"exited at start: .+"),
            server.throwaway_server(),
        ):
            pass
