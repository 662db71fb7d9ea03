"""Signals across processes and hosts, on Redis Streams.

An in-process signal reaches only the receivers of its own process. A service
that runs as several workers (``uvicorn --workers N``, several hosts) exports
the signals whose receivers must run elsewhere to a :class:`RedisBridge`,
entered once in the application's lifespan::

    from asyncsignals.redis import RedisBridge

    bridge = RedisBridge("redis://localhost:6379", app="shop")
    bridge.export(order_shipped)                      # work queue: one process runs it
    bridge.export(cache_invalidated, mode="broadcast")  # every process runs it

    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=42, tracking_number="1Z")

Needs the ``redis`` extra (``pip install 'asyncsignals[redis]'``); the rest of
asyncsignals never imports redis. **asyncio only**: redis-py's async client
(``redis.asyncio``) runs on asyncio (uvloop included), not on trio; entering
a bridge under trio raises ``RuntimeError``.

Modes:

- ``"work"`` (the default): a work queue on a Redis Streams consumer group.
  Each event runs ``signal.send_robust(sender, **payload)`` in one process of
  the group, and is acknowledged (``XACK``) only after that send completed.
  **At least once**: an event is never lost while Redis keeps it (events
  trimmed by ``maxlen`` before the group read them are lost, and the bridge
  logs a warning saying how many), and may run twice (a process killed
  after its receivers ran but before the ack, an entry claimed from a
  consumer that was only slow), so receivers of a work signal must be
  idempotent. A restarted process resumes where its group left off;
  entries pending on a dead consumer are claimed (``XAUTOCLAIM``) once idle
  for ``claim_idle`` seconds, and the bridge keeps the entries it is still
  working on from looking idle.
- ``"broadcast"``: every bridge (every process) that exports the signal runs
  every event published once it was entered (``XREAD``, no group).
  **At most once**: a process that is down or restarting misses the events
  published meanwhile. Use it for what a fresh process rebuilds anyway
  (cache invalidation, websocket pushes).

The wire: one stream per signal, ``<stream_prefix>:signal:<signal name>``
(the prefix is ``asyncsignals:<app>`` unless given),
whose entries have one field, ``event``, holding UTF-8 JSON
``{"v": 2, "signal": name, "sender": name or null, "payload": {...}, "id":
event id, "published_at": seconds, "origin": {"app": ..., "consumer": ...}}``,
plus ``"trace"`` (W3C ``traceparent`` and ``tracestate``) when OpenTelemetry
is installed and a span is current at publish. A receiver run by the bridge
reads the event's id, time, origin and delivery count with
:func:`current_event`; a :class:`Deduplicator` drops repeated ids. Entries
of version 1 (published before envelopes) still decode; a bridge older than
envelopes dead-letters version 2 entries ("unknown wire version"): upgrade
the consumers before the publishers.
Senders travel as names (strings), never as objects; data from Redis is only
ever parsed as JSON (never unpickled, never evaluated), after a size check.
An entry that is malformed, oversized, for another signal, or whose payload
does not match the signal is logged, copied to the dead-letter stream
(``<stream_prefix>:dead`` by default, with the reason) and acknowledged: it
never stops the bridge nor delays the entries behind it.

Memory is bounded: the bridge reads at most ``batch_size`` entries at a time,
each measured inside Redis before it is read (one over ``max_message_bytes``
stays there and is dead-lettered by id; only the blocking read that waits
for the next entry takes it whole, then checks it), and reads again only
when its ``max_concurrent`` local sends have room (backpressure on Redis,
not on the heap); ``publish`` caps each stream at about ``maxlen`` entries
(``XADD MAXLEN ~``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
from typing_extensions import ParamSpec

try:
    import redis.asyncio as aioredis
except ImportError as _missing_dependency:
    raise ImportError(
        "asyncsignals.redis needs redis-py, which is not installed: "
        "pip install 'asyncsignals[redis]'"
    ) from _missing_dependency

from ._lifespan import Lifespan
from ._payload import pop_sender
from ._redis_codecs import TypedJSON
from ._redis_consumer import Consumer
from ._redis_envelope import Deduplicator, Envelope, Origin, current_event
from ._redis_options import check_limits, checked_client, process_name
from ._redis_wire import (
    FIELD,
    Codec,
    Export,
    Mode,
    RejectedMessageError,
    Start,
    encode,
    export_of,
    text,
)
from ._signal import Signal

# The payload of the signal an event is published for, as its own send takes it.
P = ParamSpec("P")

__all__ = [
    "BridgeClosedError",
    "Codec",
    "Deduplicator",
    "Envelope",
    "Mode",
    "Origin",
    "RedisBridge",
    "RejectedMessageError",
    "TypedJSON",
    "current_event",
]


class BridgeClosedError(RuntimeError):
    """The bridge is not running: not entered yet, or shutting down."""


class RedisBridge:
    """Delivers exported signals to the receivers of every other process, on Redis Streams.

    Export signals, enter the bridge in the application's lifespan, and
    publish::

        bridge = RedisBridge(url, app="shop", consumer=os.environ.get("WORKER_ID"))
        bridge.export(order_shipped)

        @asynccontextmanager
        async def lifespan(app):
            async with bridge:
                app.state.bridge = bridge
                yield

        await app.state.bridge.publish(order_shipped, "shop", order_id=42)

    :meth:`publish` does not run local receivers: the event reaches them the
    way it reaches every other process, through Redis (in work mode, in
    whichever process of the group reads it first; in broadcast mode, in
    every process, this one included). Keep ``await signal.send(...)`` for
    what must run here and now.

    While entered, the bridge reads the exported signals' streams and runs
    each event as ``await signal.send_robust(sender, **payload)`` in one of
    ``max_concurrent`` worker tasks; receivers' exceptions are logged (on
    ``asyncsignals`` by ``send_robust``, and on ``asyncsignals.redis`` with
    the entry) and counted in :attr:`receiver_errors`, and the event is
    acknowledged anyway: a receiver that wants a retry handles it itself.

    Args:
        redis: A ``redis.asyncio.Redis`` client (the bridge never closes it),
            or a URL for a client the bridge owns. The client must keep
            ``decode_responses=False`` (the default): the bridge reads raw
            bytes so that a hostile entry cannot break decoding. Either
            protocol (RESP2, or RESP3, redis-py 8's default) will do.
        app: The application's name, the same in each of its processes
            (web workers, background workers) and another for each other
            application on the same Redis: it names the streams
            (``asyncsignals:<app>:...``) and the consumer group, so that
            two applications with a signal of the same name never take each
            other's events. Required unless both ``group`` and
            ``stream_prefix`` are given.
        group: The consumer group of work mode; default ``app``. Processes
            of one service share it; another service reading the same
            signals (the same ``app``) uses another.
        consumer: This process's name in the group. Default
            ``<hostname>-<pid>`` of the process that enters the bridge (so
            workers forked after the bridge was made, by a server that
            preloads the application, each have their own). A name that
            survives restarts (a worker slot number) lets a restarted
            process re-run its own pending entries at once; otherwise they
            are claimed after ``claim_idle``. Two live processes must not
            share a name. Consumers idle for ten times ``claim_idle`` with
            nothing pending are removed from the group (logged at INFO),
            so the names of processes gone for good do not pile up.
        stream_prefix: Prefix of every key the bridge uses; default
            ``asyncsignals:<app>``.
        maxlen: Approximate cap on each stream's length (``XADD MAXLEN ~``);
            None never trims. Entries trimmed before the group read them
            (while every consumer is down, or too slow) are lost, and logged
            as a warning with their count when the bridge finds its group
            behind the stream's first entry (on entering, then every
            ``claim_idle / 2`` seconds): size it for the longest outage you
            tolerate.
        claim_idle: Seconds after which another consumer may claim an entry
            pending on a consumer that stopped (``XAUTOCLAIM``); the bridge
            also checks for such entries about twice per period.
        dead_letter: Key of the dead-letter stream; default
            ``<stream_prefix>:dead``.
        max_deliveries: How many times an entry may stop its consumer
            while it ran alone before it is dead-lettered instead of run
            again: an event whose send kills or hangs every consumer that
            takes it (a poison message) stops there, and only that event.
            An entry left pending by a consumer that stopped (this one
            before a restart, or another one) is taken again alone, one at
            a time, each once the one before has run (or ``claim_idle``
            seconds have passed), so the entries read in the same batch as
            the poison message are not counted against: they run. Counted
            by Redis across consumers and restarts; None retries for ever.
        batch_size: Entries read per command, and the size of the local queue.
        max_concurrent: Local sends running at once.
        grace_period: Seconds that leaving the ``async with`` block lets
            running sends finish before cancelling them.
        max_message_bytes: Largest entry accepted, in bytes of JSON; larger
            ones are refused by :meth:`publish` and dead-lettered when read.
        block: Seconds each read waits on Redis for new entries. Must be
            shorter than the client's ``socket_timeout`` (a ``ValueError``
            otherwise): a read that outlasts it would fail as if Redis were
            down. Leave a margin for the network (redis-py 8's default
            client times out after 5 s; the default block is 2 s).
        start_from: Where the consumer group starts reading a work stream
            when it does not exist yet (the service's first start):
            ``"new"`` (the default), the events published from then on;
            ``"beginning"``, every event the stream still holds too (a new
            service that must process the history). Events published
            before the group exists (by processes that only publish) are
            skipped under ``"new"``. A group that exists resumes where it
            left off, whatever this says; one created again because its
            stream was deleted starts at the new stream's beginning.
        send_timeout: Seconds an event's send may run before it is
            cancelled (None: no limit). A work entry whose send timed out
            stays pending, is taken again alone once idle for
            ``claim_idle``, and counts towards ``max_deliveries``; a
            broadcast one is dropped. Either way the worker is free for the
            entries behind it. Counted in :attr:`timed_out`.
        codec: The :class:`Codec` of every signal exported without one of
            its own; by default payloads must be JSON values that come back
            as they were sent. :class:`TypedJSON` carries the common types.
        name: Shown in ``repr`` and in logs.

    Attributes:
        app: The application's name, or None when ``group`` and
            ``stream_prefix`` were given instead.
        group: The consumer group every process of the service shares.
        consumer: This process's name in the group.
        stream_prefix: The prefix of every stream the bridge uses.
        dead_letter: The stream rejected and poison entries go to.
        max_deliveries: Deliveries after which an entry is dead-lettered.
        max_concurrent: At most this many deliveries run at once.
        grace_period: Seconds the shutdown may take to finish deliveries.
        name: Shown in ``repr`` and logs, or None.

    The other constructor arguments are kept as attributes of the same name
    too; read them, do not change them while the bridge runs.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        app: str | None = None,
        group: str | None = None,
        consumer: str | None = None,
        stream_prefix: str | None = None,
        maxlen: int | None = 100_000,
        claim_idle: float = 60.0,
        dead_letter: str | None = None,
        max_deliveries: int | None = 10,
        batch_size: int = 16,
        max_concurrent: int = 16,
        grace_period: float = 10.0,
        max_message_bytes: int = 1 << 20,
        block: float = 2.0,
        start_from: Start = "new",
        send_timeout: float | None = 300.0,
        codec: Codec | None = None,
        name: str | None = None,
    ) -> None:
        if app is not None:
            if not app:
                raise ValueError("app must be a non-empty name, e.g. app='shop'")
            group = app if group is None else group
            stream_prefix = f"asyncsignals:{app}" if stream_prefix is None else stream_prefix
        if group is None or stream_prefix is None:
            raise TypeError(
                "RedisBridge needs app=, your application's name, e.g. "
                "RedisBridge(url, app='shop'): the same name in each of its processes (web "
                "and background workers), another for each other application on this Redis. "
                "It names the streams (asyncsignals:<app>:...) and the consumer group, so "
                "that applications with a signal of the same name keep their events apart"
            )
        check_limits(
            batch_size=batch_size,
            max_concurrent=max_concurrent,
            max_message_bytes=max_message_bytes,
            maxlen=maxlen,
            max_deliveries=max_deliveries,
            claim_idle=claim_idle,
            block=block,
            send_timeout=send_timeout,
            start_from=start_from,
            grace_period=grace_period,
        )
        client = checked_client(redis, block)
        self._client = client
        self._owns_client = isinstance(redis, str)
        self.app = app
        self.group: str = group
        # The default names the process that enters the bridge, not the one
        # that made it: workers forked from a parent that built it at import
        # time (a preloading server) each get a name of their own.
        self._names_its_process = consumer is None
        self.consumer: str = consumer if consumer is not None else process_name()
        self.stream_prefix: str = stream_prefix
        self.maxlen = maxlen
        self.claim_idle = claim_idle
        self.dead_letter: str = dead_letter if dead_letter is not None else f"{stream_prefix}:dead"
        self.max_deliveries = max_deliveries
        self.batch_size = batch_size
        self.max_concurrent = max_concurrent
        self.grace_period = grace_period
        self.max_message_bytes = max_message_bytes
        self.block = block
        self.start_from: Start = start_from
        self.send_timeout = send_timeout
        self.codec = codec
        self.name = name
        self._exports: dict[Signal[..., Any], Export] = {}
        self._by_stream: dict[str, Export] = {}
        self._lifespan = self._new_run()
        self._consumer = Consumer(self, self._client, self._lifespan, self._exports)

    def _new_run(self) -> Lifespan:
        """The life of one run of the bridge, from entering it to leaving it."""
        return Lifespan(
            self,
            kind="bridge",
            closed_error=BridgeClosedError,
            refusal="publishes nothing more",
            before="publishing",
        )

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name is not None else ""
        return (
            f"<RedisBridge{name} {self._lifespan.state}: consumer {self.consumer!r} in group "
            f"{self.group!r}, {len(self._exports)} signals, {self.delivered} delivered>"
        )

    # -- counters -----------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Events this process ran (``send_robust`` completed), in either mode."""
        return self._consumer.delivery.delivered

    @property
    def dead_lettered(self) -> int:
        """Entries this process refused and copied to the dead-letter stream."""
        return self._consumer.delivery.dead_lettered

    @property
    def timed_out(self) -> int:
        """Sends this process cancelled for outlasting ``send_timeout``."""
        return self._consumer.delivery.timed_out

    @property
    def receiver_errors(self) -> int:
        """Exceptions raised by local receivers of delivered events, each logged."""
        return self._consumer.delivery.receiver_errors

    # -- health -------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Entered, not left, and not stopped: it publishes and consumes.

        Redis being unreachable does not make it unhealthy (it reconnects on
        its own, logging a warning); what stops the bridge for good does: an
        error that is no outage (a key of the wrong type, a Redis refusing the
        bridge's commands), or a receiver's ``BaseException``. Meant for a
        health check; :meth:`raise_if_failed` raises what stopped it.
        """
        return self._lifespan.running

    def raise_if_failed(self) -> None:
        """Raise BridgeClosedError, caused by what stopped the bridge, if something did.

        Does nothing while the bridge is healthy, before it is entered and
        once it was left normally. A bridge that failed raises its failure
        at exit too, and :meth:`publish` raises this same error.

        Raises:
            BridgeClosedError: the bridge stopped for good while it ran; its
                ``__cause__`` is what stopped it.
        """
        failure = self._consumer.failure
        if failure is not None:
            raise self._lifespan.closed_error() from failure

    # -- exporting ----------------------------------------------------------

    def export(
        self,
        signal: Signal[..., Any],
        *,
        mode: Mode = "work",
        codec: Codec | None = None,
        senders: Mapping[str, object] | None = None,
        consume: bool = True,
    ) -> None:
        """Carry ``signal`` over Redis: publish it here, and run it when read.

        Call it before entering the bridge, in every process that publishes
        or receives the signal, with the same ``mode`` and ``codec``.

        Args:
            signal: A signal with a ``name`` (``Signal.declare`` names it
                after its function): names are what travel.
            mode: ``"work"`` (each event runs in one process of the group,
                at least once) or ``"broadcast"`` (in every process, at most
                once).
            codec: Converts the payload to JSON values and back; by default
                the bridge's ``codec``, else the payload must be JSON values
                already.
            senders: Local objects by name. :meth:`publish` then takes one
                of these objects (or its name) as the sender, and receivers
                get the object back, so ``connect(receiver, sender=Shop)``
                works across processes; an entry naming another sender is
                dead-lettered. Without it, receivers get the sender's name
                (an interned string) or None.
            consume: False to publish the signal from this process without
                running its events here (a web process that only enqueues).

        Raises:
            ValueError: the signal has no name, another exported signal has
                the same name, or ``mode`` is unknown.
            RuntimeError: the bridge was entered already (even if left since).
        """
        if self._lifespan.entered:
            raise RuntimeError(f"{self!r}: export signals before entering the bridge")
        export = export_of(
            signal,
            self.stream_prefix,
            mode=mode,
            codec=codec if codec is not None else self.codec,
            senders=senders,
            consume=consume,
        )
        other = self._by_stream.get(export.stream)
        if other is not None and other.signal is not signal:
            raise ValueError(
                f"another signal named {export.name!r} is already exported on {self!r}"
            )
        self._exports[signal] = export
        self._by_stream[export.stream] = export

    # -- publishing ---------------------------------------------------------

    async def publish(self, signal: Signal[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Add an event of ``signal`` to its stream; return the entry's id.

        Takes what the signal's own send takes: the sender (by position or
        as ``sender=``) and the payload, type-checked against a declared
        signal's.

        The event carries a new event id, the time, this bridge as its
        origin and, with OpenTelemetry installed, the current span's trace
        context (see :func:`current_event`). Returns once Redis has stored
        the entry (a cancellation point). If it raises a Redis error, the
        event may or may not have been stored.

        Raises:
            BridgeClosedError: the bridge is not running; if it stopped for
                good, its ``__cause__`` is what stopped it.
            KeyError: ``signal`` was not exported.
            TypeError: the payload does not match the signal, is not JSON
                (after the codec) or holds what JSON would give back as
                another type (a tuple, a dict key that is not a str, an
                ``IntEnum``: the message says where), or the sender is not
                a name; nothing was published.
            ValueError: the event is larger than ``max_message_bytes``.
        """
        # A positional sender with sender= too is the payload's error, raised by encode.
        sender = args[0] if len(args) == 1 else pop_sender(args, kwargs, "publish")
        payload = kwargs
        if not self._lifespan.running:
            raise self._lifespan.closed_error() from self._consumer.failure
        export = self._exports.get(signal)
        if export is None:
            raise KeyError(f"{signal!r} is not exported on {self!r}; call bridge.export(signal)")
        data = encode(
            export, sender, payload, self.max_message_bytes, Origin(self.app, self.consumer)
        )
        entry_id = await self._client.xadd(
            export.stream,
            {FIELD: data},
            maxlen=self.maxlen,
            approximate=True,
        )
        return text(entry_id)

    # -- lifespan -----------------------------------------------------------

    async def __aenter__(self) -> RedisBridge:
        """Create the consumer groups and start reading.

        A bridge that was left may be entered again (a module-level bridge
        in the lifespan of an application that a test suite starts several
        times): it starts afresh, its counters go on.

        Raises:
            RuntimeError: not running on asyncio, or running already (or
                stopped, or shutting down: not left yet).
            redis.exceptions.RedisError: Redis could not be reached.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "asyncsignals.redis runs on asyncio only: redis-py's async client "
                "(redis.asyncio) does not run on trio. Run the bridge on asyncio (or uvloop)."
            ) from None
        if self._names_its_process:
            self.consumer = process_name()
        if self._lifespan.state == "closed":
            self._lifespan = self._new_run()
            self._consumer.renew(self._lifespan)
        elif self._lifespan.entered:
            raise RuntimeError(
                f"{self!r} is entered already; a bridge runs once at a time: leave it (end "
                "its 'async with' block) before entering it again, or make another bridge"
            )
        try:
            await self._consumer.prepare()
        except BaseException:
            if self._owns_client:
                await self._client.aclose()
            raise
        self._lifespan.start(self._consumer.workers())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop reading, let running sends finish, and leave the rest pending.

        Waits up to ``grace_period`` seconds for the sends already running,
        acknowledging each that completes; entries read but not started stay
        pending in the group, for this consumer's next start or for another
        consumer after ``claim_idle``. The bridge's tasks are its own: the
        block may be left by another task than the one that entered it, and
        leaving it in a task that is already being cancelled still waits
        for the grace period and raises no cancellation of its own. Left by
        a ``BaseException`` that is neither an ``Exception`` nor a
        cancellation, running sends are cancelled at once (and stay pending
        too); so they are when a cancellation still reaches the wait
        (asyncio's ``Task.cancel()`` called again), which then propagates.

        Raises:
            BaseException: what stopped the bridge while it ran (a Redis
                error that is no outage, a receiver's ``KeyboardInterrupt``),
                as itself. Otherwise the block's own exception propagates
                unchanged.
        """
        self._consumer.stop_reading()
        try:
            await self._lifespan.close(exc, self.grace_period)
        finally:
            self._consumer.close()
            if self._owns_client:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
        self._lifespan.raise_failures(f"{self._consumer.display_name} failed")


# Public names show their public path in reprs and tracebacks.
for _public in (BridgeClosedError, RedisBridge):
    _public.__module__ = "asyncsignals.redis"
del _public
