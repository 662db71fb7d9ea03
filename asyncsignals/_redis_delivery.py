"""The Redis bridge's delivery of one entry: its send, then its acknowledgement or dead letter.

:class:`Delivery` runs an entry the consumer loop (``_redis_consumer``) read:
decodes it, runs its send (bounded by ``send_timeout``) in the context of
its envelope and trace, counts and logs what its receivers raised, then
acknowledges it, or copies it to the dead-letter stream with the reason
and acknowledges it there. Never imports the consumer loop: it tells it,
through a callback, when an entry is no longer held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._receivers import describe
from ._redis_envelope import current_envelope, in_trace
from ._redis_wire import Entry, RejectedMessageError, dead_letter_copy, decode

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._redis_workers import SendTimer

__all__ = ["Delivery", "DeliveryOptions"]

# The bridge's own logger: what the delivery logs, the bridge logs.
logger: Final = logging.getLogger("asyncsignals.redis")

# How long an acknowledgement may take once the send it acknowledges is done,
# how many times it is tried, and the wait between tries.
_ACK_TIMEOUT: Final = 5.0
_ACK_ATTEMPTS: Final = 3
_ACK_RETRY: Final = 0.05


class DeliveryOptions(Protocol):
    """The bridge's options a :class:`Delivery` reads, each time it uses one (never sets)."""

    group: str
    consumer: str
    max_message_bytes: int
    send_timeout: float | None
    dead_letter: str
    maxlen: int | None


class Delivery:
    """Runs entries one at a time each, and counts what became of them.

    ``release`` is called with an entry once this process no longer holds
    it: acknowledged, or left pending for a later delivery (by any
    consumer). ``describe_bridge`` names the bridge in the logs.
    """

    def __init__(
        self,
        options: DeliveryOptions,
        client: aioredis.Redis,
        release: Callable[[Entry], None],
        describe_bridge: Callable[[], str],
    ) -> None:
        self.delivered = 0
        self.dead_lettered = 0
        self.receiver_errors = 0
        self.timed_out = 0
        self._options = options
        self._client = client
        self._release = release
        self._describe_bridge = describe_bridge
        # The ids of the entries whose sends completed, by stream, to
        # acknowledge; then to release (once acknowledged).
        self._unacknowledged: dict[str, list[str]] = {}
        self._entries_to_release: list[Entry] = []
        self._completed: anyio.Event | None = None
        self._finishing = False

    async def deliver(self, entry: Entry, timer: SendTimer) -> None:
        """Run ``entry``'s send; then queue its acknowledgement, or dead-letter it.

        The send is marked on ``timer``, whose watchdog cancels it at its
        deadline: the cancellation then propagates, for the worker to call
        :meth:`time_out`. An entry that cannot be acknowledged or
        dead-lettered (Redis unreachable, or out of memory) stays pending,
        logged.
        """
        export = entry.export
        try:
            message = decode(entry, self._options.max_message_bytes)
        except RejectedMessageError as exc:
            await self.reject(entry, str(exc))
            return
        results: list[tuple[Any, Any]] | None = None
        failure: Exception | None = None
        # The send copies this context for its receivers: they see the
        # envelope, and the publisher's span as the parent of their own.
        delivering = current_envelope.set(message.envelope)
        with in_trace(message.trace):
            timer.start()
            try:
                results = await export.signal.send_robust(message.sender, **message.payload)
            except Exception as exc:
                logger.exception(
                    "%s: entry %s of %s: send_robust failed",
                    self._describe_bridge(),
                    entry.id,
                    export.stream,
                )
                failure = exc
            finally:
                timer.stop()
                current_envelope.reset(delivering)
        if failure is not None:
            await self.reject(entry, f"send failed: {type(failure).__name__}: {failure}")
            return
        assert results is not None
        self.delivered += 1
        self._count_failures(entry, results)
        # From Python 3.12 the errors' tracebacks reach this frame (it stepped
        # the send): keep no reference to them here, or they form a cycle.
        del results
        self._acknowledge(entry)

    def time_out(self, entry: Entry) -> None:
        """The send of ``entry`` outlasted ``send_timeout`` and was cancelled."""
        self.timed_out += 1
        # No longer held: it looks idle, and is claimed (by any consumer,
        # this one too) after claim_idle, then runs alone, which counts.
        self._release(entry)
        logger.error(
            "%s: entry %s of %s: the send did not complete within send_timeout=%s s and "
            "was cancelled; %s",
            self._describe_bridge(),
            entry.id,
            entry.export.stream,
            self._options.send_timeout,
            "it is dropped (broadcast)"
            if entry.export.mode == "broadcast"
            else "it stays pending, to be taken again alone once idle for claim_idle "
            "(a delivery that counts towards max_deliveries)",
        )

    def _count_failures(self, entry: Entry, results: list[tuple[Any, Any]]) -> None:
        for receiver, result in results:
            if isinstance(result, Exception):
                self.receiver_errors += 1
                # The traceback is on the record send_robust logged.
                logger.error(
                    "%s: entry %s of %s: receiver %s raised %s: %s",
                    self._describe_bridge(),
                    entry.id,
                    entry.export.stream,
                    describe(receiver),
                    type(result).__name__,
                    result,
                )

    async def reject(self, entry: Entry, reason: str) -> None:
        """Copy ``entry`` to the dead-letter stream with ``reason``, then acknowledge it.

        When Redis has no memory for the copy, or cannot be reached, the
        entry stays pending (logged), to be tried again once idle for
        ``claim_idle``.
        """
        logger.error(
            "%s: entry %s of %s moved to %s: %s",
            self._describe_bridge(),
            entry.id,
            entry.export.stream,
            self._options.dead_letter,
            reason,
        )
        copy = dead_letter_copy(
            entry, self._options.consumer, reason, self._options.max_message_bytes
        )
        refusal: Exception | None = None
        try:
            await self._client.xadd(
                self._options.dead_letter, copy, maxlen=self._options.maxlen, approximate=True
            )
        except (OutOfMemoryError, RedisConnectionError, RedisTimeoutError) as exc:
            refusal = exc
        if refusal is not None:
            # Redis refuses what needs memory, not reads nor acknowledgements,
            # or is unreachable: the bridge goes on, and the entry waits until
            # Redis has room, or is back.
            self._release(entry)
            logger.error(
                "%s: entry %s of %s could not be moved to %s (%s); %s",
                self._describe_bridge(),
                entry.id,
                entry.export.stream,
                self._options.dead_letter,
                refusal,
                "it is dropped (broadcast)"
                if entry.export.mode == "broadcast"
                else "it stays pending, tried again once idle for claim_idle",
            )
            return
        self.dead_lettered += 1
        self._acknowledge(entry)

    def _acknowledge(self, entry: Entry) -> None:
        """Its send done: queue ``entry``'s XACK for :meth:`acknowledge_completed` (work mode)."""
        if entry.export.mode == "broadcast":
            self._release(entry)
            return
        assert self._completed is not None
        self._unacknowledged.setdefault(entry.export.stream, []).append(entry.id)
        self._entries_to_release.append(entry)
        self._completed.set()

    def start(self) -> None:
        """Before the workers run: :meth:`acknowledge_completed` runs until :meth:`finish`."""
        self._completed = anyio.Event()
        self._finishing = False

    def finish(self) -> None:
        """The workers are done: :meth:`acknowledge_completed` sends what is left, and returns."""
        assert self._completed is not None
        self._finishing = True
        self._completed.set()

    async def acknowledge_completed(self) -> None:
        """Acknowledge the entries whose sends completed: one XACK per stream for all so far.

        A task of its own beside the workers, which never wait for Redis to
        acknowledge: while one XACK is in flight, the entries completed
        meanwhile gather for the next, so that a loaded stream costs one
        XACK per batch, not one per entry. Only entries whose send
        completed are acknowledged. Returns after :meth:`finish`, once
        every entry queued before is acknowledged (or left pending by an
        outage, logged).
        """
        while True:
            assert self._completed is not None
            await self._completed.wait()
            self._completed = anyio.Event()
            while self._unacknowledged:
                unacknowledged, self._unacknowledged = self._unacknowledged, {}
                entries, self._entries_to_release = self._entries_to_release, []
                # Each send is done: its acknowledgement must not be lost to
                # the grace period's cancellation.
                with anyio.CancelScope(shield=True), anyio.move_on_after(_ACK_TIMEOUT):
                    for stream, ids in unacknowledged.items():
                        await self._send_xack(stream, ids)
                for entry in entries:
                    self._release(entry)
            if self._finishing:
                return

    async def _send_xack(self, stream: str, ids: list[str]) -> None:
        attempts = 1
        while True:
            try:
                await self._client.xack(stream, self._options.group, *ids)
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # A pooled connection the server closed fails once.
                if attempts == _ACK_ATTEMPTS:
                    logger.warning(
                        "%s: %d entries of %s were not acknowledged: Redis unavailable (%s); "
                        "each stays pending, read again after a reconnection or claimed",
                        self._describe_bridge(),
                        len(ids),
                        stream,
                        exc,
                    )
                    return
                attempts += 1
                await anyio.sleep(_ACK_RETRY)
