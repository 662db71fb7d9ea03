"""Model-based testing: random connect/disconnect/drop/send sequences against a reference model.

A hypothesis ``RuleBasedStateMachine`` drives one signal through random
sequences of connects (weak and strong, for any sender or a specific one, by
receiver or ``dispatch_uid``, inline or ``to_thread``; functions, bound
methods, ``functools.partial`` and callable objects, sync and async),
disconnects, dropped receivers and senders (then ``gc.collect()``), and
sends (``send``, ``send_robust``, and ``send_sync`` from a worker thread, a
thread with no event loop and the loop's own thread). The model is a list of
connections in connection order; after every step the signal must agree with
it: which receivers ran, how often, in which thread, with which arguments,
in what order (sync receivers), what each returned (results in connection
order), what was raised and logged, and which receivers and senders were
collected.

The event loop runs in a blocking portal, on asyncio and on trio. The
``asyncsignals-ci`` profile keeps the budget small; the ``slow`` test runs
the ``asyncsignals-long`` profile (10,000 examples per backend).
"""

from __future__ import annotations

import collections
import faulthandler
import functools
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from asyncsignals import Signal

from .conftest import CI_PROFILE, LONG_PROFILE

SHAPES = ("function", "partial", "object", "method")
# Sender slots: None (any sender), three weakly referenceable senders that can
# be dropped, and one ``object()`` that cannot be weakly referenced.
SENDER_SLOTS = (None, 0, 1, 2, 3)
PLAIN_SLOT = 3
RECEIVER_SLOTS = 6
UIDS = ("first", "second")


class ReceiverFailedError(Exception):
    """What a failing receiver raises, naming itself."""


@dataclass(frozen=True)
class Call:
    """One call of a receiver, as the receiver saw it."""

    label: str
    sender: str
    value: int
    keywords: tuple[str, ...]
    signal_id: int | None
    thread: int


class Sender:
    """A weakly referenceable sender."""

    def __init__(self, label: str) -> None:
        self.label = label


class Journal:
    """Where receivers record their calls; holds no sender and no receiver."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    @staticmethod
    def sender_label(sender: object) -> str:
        """How a call records its sender, without keeping it alive."""
        return getattr(sender, "label", "plain" if sender is not None else "none")

    def record(self, label: str, fails: bool, sender: object, keywords: dict[str, Any]) -> object:
        signal = keywords.get("signal")
        self.calls.append(
            Call(
                label,
                self.sender_label(sender),
                keywords["value"],
                tuple(sorted(keywords)),
                None if signal is None else id(signal),
                threading.get_ident(),
            )
        )
        if fails:
            raise ReceiverFailedError(label)
        return ("returned", label, keywords["value"])


def make_function(journal: Journal, label: str, fails: bool, is_async: bool, kwargs: bool) -> Any:
    """A plain function receiver, taking ``**kwargs`` (and so ``signal=``) or not."""
    record = journal.record
    if is_async and kwargs:

        async def async_any(sender: object, **keywords: Any) -> object:
            await anyio.lowlevel.checkpoint()
            return record(label, fails, sender, keywords)

        return async_any
    if is_async:

        async def async_named(*, sender: object, value: int) -> object:
            await anyio.lowlevel.checkpoint()
            return record(label, fails, sender, {"value": value})

        return async_named
    if kwargs:

        def sync_any(sender: object, **keywords: Any) -> object:
            return record(label, fails, sender, keywords)

        return sync_any

    def sync_named(*, sender: object, value: int) -> object:
        return record(label, fails, sender, {"value": value})

    return sync_named


def partial_target(
    journal: Journal, label: str, fails: bool, sender: object, **keywords: Any
) -> object:
    """What a sync ``functools.partial`` receiver wraps."""
    return journal.record(label, fails, sender, keywords)


async def async_partial_target(
    journal: Journal, label: str, fails: bool, sender: object, **keywords: Any
) -> object:
    """What an async ``functools.partial`` receiver wraps."""
    await anyio.lowlevel.checkpoint()
    return journal.record(label, fails, sender, keywords)


class CallableReceiver:
    """A callable object receiver."""

    def __init__(self, journal: Journal, label: str, fails: bool) -> None:
        self.journal = journal
        self.label = label
        self.fails = fails

    def __call__(self, sender: object, **keywords: Any) -> object:
        return self.journal.record(self.label, self.fails, sender, keywords)


class AsyncCallableReceiver(CallableReceiver):
    """A callable object receiver with an async ``__call__``."""

    async def __call__(self, sender: object, **keywords: Any) -> object:
        await anyio.lowlevel.checkpoint()
        return self.journal.record(self.label, self.fails, sender, keywords)


class MethodOwner(CallableReceiver):
    """Owns the bound-method receivers ``on_sync`` and ``on_async``."""

    def on_sync(self, sender: object, **keywords: Any) -> object:
        return self.journal.record(self.label, self.fails, sender, keywords)

    async def on_async(self, sender: object, **keywords: Any) -> object:
        await anyio.lowlevel.checkpoint()
        return self.journal.record(self.label, self.fails, sender, keywords)


@dataclass
class ReceiverModel:
    """A receiver the model knows: how it behaves and how to reach it."""

    label: str
    is_async: bool
    fails: bool
    takes_signal: bool
    # What keeps it alive while we hold it (the owner, for a bound method).
    target: weakref.ref[Any]
    identity: int
    method: str | None = None

    def callable(self) -> Any:
        """The receiver as connected (a fresh bound method for a method receiver)."""
        target = self.target()
        assert target is not None, f"{self.label} was collected while connected"
        return target if self.method is None else getattr(target, self.method)


@dataclass
class Connection:
    """One connection in the model."""

    sequence: int
    sender_slot: int | None
    key: tuple[str, object]
    receiver: ReceiverModel
    strong: bool
    to_thread: bool


class CountingHandler(logging.Handler):
    """Counts ERROR records without keeping them (a kept traceback would keep senders alive)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.errors += 1  # under the handler's own lock


class SignalMachine(RuleBasedStateMachine):
    """One signal against the reference model, on one backend."""

    backend = "asyncio"
    #: Machines started so far in this process: the examples run.
    started = 0

    def __init__(self) -> None:
        super().__init__()
        SignalMachine.started += 1
        # The collections after each drop need only look at what this example
        # made: everything older (hypothesis's growing record of the run) is
        # frozen until teardown. A frozen object counts as a live root, so this
        # can only make a drop look leaked, never hide a leak.
        gc.freeze()
        backend = self.backend
        self.signal = Signal(name="model")
        self.journal = Journal()
        self.handler = CountingHandler()
        logger = logging.getLogger("asyncsignals")
        logger.addHandler(self.handler)
        self.propagate = logger.propagate
        logger.propagate = False
        self.held: dict[int, Any] = {}  # receiver slot -> what keeps it alive
        self.receiver_models: dict[int, ReceiverModel] = {}
        self.senders: dict[int, object] = {PLAIN_SLOT: object()}
        self.connections: list[Connection] = []
        self.collected: list[tuple[str, weakref.ref[Any]]] = []
        self.sequence = 0
        self.value = 0
        self.labels = 0
        # Last, so that nothing can fail between starting the loop and teardown.
        self.portal_context: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(backend)
        )
        self.portal = self.portal_context.__enter__()
        self.loop_thread: int = self.portal.call(threading.get_ident)

    def teardown(self) -> None:
        logger = logging.getLogger("asyncsignals")
        logger.removeHandler(self.handler)
        logger.propagate = self.propagate
        self.portal_context.__exit__(None, None, None)
        gc.unfreeze()

    # -- the model ------------------------------------------------------------

    def sender(self, slot: int | None) -> object:
        """The sender in this slot, made when the slot is empty."""
        if slot is None:
            return None
        if slot not in self.senders:
            self.labels += 1
            self.senders[slot] = Sender(f"sender{self.labels}")
        return self.senders[slot]

    def new_receiver(
        self, slot: int, shape: str, is_async: bool, fails: bool, kwargs: bool
    ) -> None:
        """Create a receiver of this shape in an empty slot."""
        self.labels += 1
        label = f"r{self.labels}-{shape}-{'async' if is_async else 'sync'}"
        journal = self.journal
        method = None
        held: Any
        if shape == "function":
            held = make_function(journal, label, fails, is_async, kwargs)
        elif shape == "partial":
            target = async_partial_target if is_async else partial_target
            held = functools.partial(target, journal, label, fails)
            kwargs = True
        elif shape == "object":
            kind = AsyncCallableReceiver if is_async else CallableReceiver
            held = kind(journal, label, fails)
            kwargs = True
        else:
            held = MethodOwner(journal, label, fails)
            method = "on_async" if is_async else "on_sync"
            kwargs = True
        self.held[slot] = held
        self.receiver_models[slot] = ReceiverModel(
            label, is_async, fails, kwargs, weakref.ref(held), id(held), method
        )

    def alive(self, model: ReceiverModel) -> bool:
        """Whether the receiver is held by the test or by a strong connection."""
        return any(held is model.target() for held in self.held.values()) or any(
            c.receiver is model and c.strong for c in self.connections
        )

    @staticmethod
    def wait_for_collection(references: list[weakref.ref[Any]]) -> None:
        """Collect garbage until these objects are gone, for at most a second.

        A send returns to this thread a moment before the thread that ran it
        (the event loop's, a worker) has let go of its frames, and with them
        of the receivers and the sender. A real leak outlives the wait, and
        the callers' checks fail.
        """
        gc.collect()
        deadline = time.monotonic() + 1.0
        while any(r() is not None for r in references) and time.monotonic() < deadline:
            time.sleep(0.001)
            gc.collect()

    def bury_the_dead(self) -> None:
        """Drop the connections of receivers nothing keeps alive any more."""
        dead = {id(c.receiver): c.receiver for c in self.connections if not self.alive(c.receiver)}
        self.wait_for_collection([model.target for model in dead.values()])
        for model in dead.values():
            self.collected.append((model.label, model.target))
        self.connections = [c for c in self.connections if id(c.receiver) not in dead]

    def reached_by(self, slot: int | None) -> list[Connection]:
        """The model's connections a send from this sender slot reaches, in order."""
        return [c for c in self.connections if c.sender_slot is None or c.sender_slot == slot]

    def check_collected(self) -> None:
        """Receivers the model says are gone have been collected."""
        # Refresh every sender's cached lookup first: a stale one may still
        # hold a disconnected receiver (see test_leaks, the expected failure
        # test_disconnected_strong_receiver_is_released_at_once).
        for slot in SENDER_SLOTS:
            if slot is None or slot in self.senders:
                self.signal.receivers_for(self.sender(slot))
        alive = [label for label, target in self.collected if target() is not None]
        assert alive == []

    # -- rules ----------------------------------------------------------------

    @rule(
        slot=st.integers(0, RECEIVER_SLOTS - 1),
        shape=st.sampled_from(SHAPES),
        is_async=st.booleans(),
        fails=st.sampled_from([False, False, False, True]),
        kwargs=st.booleans(),
        sender_slot=st.sampled_from(SENDER_SLOTS),
        weak=st.booleans(),
        uid=st.sampled_from([None, None, *UIDS]),
        to_thread=st.sampled_from([False, False, True]),
    )
    def connect(
        self,
        slot: int,
        shape: str,
        is_async: bool,
        fails: bool,
        kwargs: bool,
        sender_slot: int | None,
        weak: bool,
        uid: str | None,
        to_thread: bool,
    ) -> None:
        """Connect a receiver (new or existing) as drawn."""
        if slot not in self.held:
            self.new_receiver(slot, shape, is_async, fails, kwargs)
        model = self.receiver_models[slot]
        receiver = model.callable()
        sender = self.sender(sender_slot)
        if to_thread and model.is_async:
            with pytest.raises(TypeError, match="to_thread"):
                self.signal.connect(receiver, sender, weak, uid, to_thread=True)
            return
        assert self.signal.connect(receiver, sender, weak, uid, to_thread=to_thread) is receiver
        key: tuple[str, object] = ("uid", uid) if uid is not None else ("receiver", model.identity)
        if any(c.key == key and c.sender_slot == sender_slot for c in self.connections):
            return  # a repeated connect is ignored
        self.sequence += 1
        self.connections.append(
            Connection(self.sequence, sender_slot, key, model, not weak, to_thread)
        )

    @rule(
        slot=st.integers(0, RECEIVER_SLOTS - 1),
        sender_slot=st.sampled_from(SENDER_SLOTS),
        uid=st.sampled_from([None, *UIDS]),
    )
    def disconnect(self, slot: int, sender_slot: int | None, uid: str | None) -> None:
        """Disconnect by receiver or by dispatch_uid; True exactly when the model had it."""
        if uid is None and slot not in self.held:
            return
        sender = self.sender(sender_slot)
        if uid is not None:
            key: tuple[str, object] = ("uid", uid)
            removed = self.signal.disconnect(sender=sender, dispatch_uid=uid)
        else:
            model = self.receiver_models[slot]
            key = ("receiver", model.identity)
            removed = self.signal.disconnect(model.callable(), sender=sender)
        matching = [c for c in self.connections if c.key == key and c.sender_slot == sender_slot]
        # A collected receiver's leftover connection under the same key (or
        # id()) removes nothing: test_disconnect_ignores_collected_receivers.
        assert removed == bool(matching)
        self.connections = [c for c in self.connections if c not in matching]
        self.bury_the_dead()

    @rule(slot=st.integers(0, RECEIVER_SLOTS - 1))
    def drop_receiver(self, slot: int) -> None:
        """Drop the test's reference to a receiver; weak-only connections die with it."""
        if slot not in self.held:
            return
        del self.held[slot]
        del self.receiver_models[slot]
        self.bury_the_dead()

    @rule(slot=st.sampled_from([0, 1, 2]))
    def drop_sender(self, slot: int) -> None:
        """Drop a sender: it is collected, and its connections are gone."""
        if slot not in self.senders:
            return
        reference = weakref.ref(self.senders.pop(slot))
        self.wait_for_collection([reference])
        assert reference() is None, "the signal kept a sender alive"
        self.connections = [c for c in self.connections if c.sender_slot != slot]
        self.bury_the_dead()

    @rule(sender_slot=st.sampled_from(SENDER_SLOTS))
    def receivers_for(self, sender_slot: int | None) -> None:
        """receivers_for and has_listeners agree with the model."""
        sender = self.sender(sender_slot)
        expected = [c.receiver.callable() for c in self.reached_by(sender_slot)]
        assert self.signal.receivers_for(sender) == expected
        assert self.signal.has_listeners(sender) == bool(expected)
        self.check_collected()

    @rule(sender_slot=st.sampled_from(SENDER_SLOTS), robust=st.booleans())
    def send(self, sender_slot: int | None, robust: bool) -> None:
        """An awaited send from the event loop."""
        send = self.signal.send_robust if robust else self.signal.send
        self.check_send(
            sender_slot,
            robust,
            lambda sender, value: self.portal.call(functools.partial(send, sender, value=value)),
            where="send",
            to_thread_inline=False,
        )

    @rule(
        sender_slot=st.sampled_from(SENDER_SLOTS),
        robust=st.booleans(),
        where=st.sampled_from(["worker", "no-loop", "loop"]),
    )
    def send_sync(self, sender_slot: int | None, robust: bool, where: str) -> None:
        """send_sync from a worker thread, from a thread with no loop, or on the loop's thread."""
        send = self.signal.send_robust_sync if robust else self.signal.send_sync

        def from_where(sender: object, value: int) -> list[tuple[Any, Any]]:
            call = functools.partial(send, sender, value=value)
            if where == "worker":
                return self.portal.call(anyio.to_thread.run_sync, call)
            if where == "loop":
                return self.portal.call(call)
            return call()

        self.check_send(sender_slot, robust, from_where, where, to_thread_inline=True)

    # -- checking a send --------------------------------------------------------

    def check_send(
        self,
        sender_slot: int | None,
        robust: bool,
        send: Callable[[object, int], list[tuple[Any, Any]]],
        where: str,
        to_thread_inline: bool,
    ) -> None:
        """Send once and compare what happened with the model."""
        self.value += 1
        value = self.value
        sender = self.sender(sender_slot)
        reached = self.reached_by(sender_slot)
        self.journal.calls.clear()
        errors_before = self.handler.errors
        results: list[tuple[Any, Any]] | None = None
        raised: BaseException | None = None
        try:
            results = send(sender, value)
        except Exception as error:  # compared with the model below
            raised = error
        calls = list(self.journal.calls)
        if where == "loop" and any(c.receiver.is_async for c in reached):
            assert isinstance(raised, RuntimeError), raised
            assert "send_sync" in str(raised)
            assert calls == []
            self.check_collected()
            return

        expected = collections.Counter(c.receiver.label for c in reached)
        failing = {c.receiver.label for c in reached if c.receiver.fails}
        # The order of sync receivers run inline, among receivers connected
        # only that way (one connected inline and to_thread runs in both).
        runs_inline = {
            c.receiver.label: not c.receiver.is_async and (to_thread_inline or not c.to_thread)
            for c in reached
        }
        for c in reached:
            inline_here = not c.receiver.is_async and (to_thread_inline or not c.to_thread)
            runs_inline[c.receiver.label] &= inline_here
        inline = [c.receiver.label for c in reached if runs_inline[c.receiver.label]]
        ran = [call.label for call in calls if runs_inline.get(call.label, False)]
        by_label: dict[str, list[Connection]] = collections.defaultdict(list)
        for connection in reached:
            by_label[connection.receiver.label].append(connection)
        for call in calls:
            model = by_label[call.label][0].receiver
            assert call.value == value
            assert call.sender == self.journal.sender_label(sender)
            if model.takes_signal:
                assert call.keywords == ("signal", "value")
                assert call.signal_id == id(self.signal)
            else:
                assert call.keywords == ("value",)
            # One of its connections explains the thread it ran in.
            assert any(self.ran_in_right_thread(call, c, where) for c in by_label[call.label])

        if failing and not robust:
            # Fail fast: the failures raised, some receivers may not have run.
            assert raised is not None
            leaves = raised.exceptions if isinstance(raised, ExceptionGroup) else (raised,)
            for leaf in leaves:
                assert isinstance(leaf, ReceiverFailedError), leaf
                assert leaf.args[0] in failing
            assert not collections.Counter(call.label for call in calls) - expected
            assert ran == inline[: len(ran)]
            del leaves, raised
        else:
            assert raised is None, raised
            assert results is not None
            assert collections.Counter(call.label for call in calls) == expected
            assert ran == inline
            assert [receiver for receiver, _ in results] == [c.receiver.callable() for c in reached]
            for (_, result), connection in zip(results, reached, strict=True):
                label = connection.receiver.label
                if connection.receiver.fails:
                    assert isinstance(result, ReceiverFailedError)
                    assert result.args == (label,)
                else:
                    assert result == ("returned", label, value)
            failures = sum(1 for c in reached if c.receiver.fails)
            assert self.handler.errors - errors_before == failures
        del results
        self.check_collected()

    def ran_in_right_thread(self, call: Call, connection: Connection, where: str) -> bool:
        """Whether the call ran in the thread the documentation gives for this connection."""
        if where == "no-loop":
            # Everything in the calling thread, async receivers on a temporary loop.
            return call.thread == threading.get_ident()
        if connection.receiver.is_async or where == "loop":
            return call.thread == self.loop_thread
        if where == "worker" or connection.to_thread:
            return call.thread != self.loop_thread
        return call.thread == self.loop_thread


class TrioSignalMachine(SignalMachine):
    """The state machine on trio."""

    backend = "trio"


MACHINES: dict[str, type[SignalMachine]] = {"asyncio": SignalMachine, "trio": TrioSignalMachine}


def run_machine(backend: str, profile: str) -> None:
    """Run the state machine on one backend under a registered profile."""
    run_state_machine_as_test(MACHINES[backend], settings=settings.get_profile(profile))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_signal_agrees_with_model(backend: str) -> None:
    """Random sequences of connects, disconnects, drops and sends agree with the model."""
    run_machine(backend, CI_PROFILE)


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_signal_agrees_with_model_long(backend: str) -> None:
    """The model test with the long profile: 10,000 examples per backend."""
    # pytest-timeout bounds this run. pytest's faulthandler watchdog would dump
    # every thread's stack after a minute, and a dump that races a thread
    # changing its frames can crash the interpreter.
    faulthandler.cancel_dump_traceback_later()
    before = SignalMachine.started
    started = time.monotonic()
    run_machine(backend, LONG_PROFILE)
    examples = SignalMachine.started - before
    print(f"{backend}: {examples} examples in {time.monotonic() - started:.0f} s")
    assert examples >= settings.get_profile(LONG_PROFILE).max_examples


def test_disconnect_ignores_collected_receivers() -> None:
    """disconnect(dispatch_uid=...) of a receiver already collected removes nothing: False."""
    signal = Signal()

    def make() -> Callable[..., None]:
        def receiver(sender: object, **kwargs: Any) -> None:
            pass

        return receiver

    signal.connect(make(), dispatch_uid="gone")
    gc.collect()
    assert signal.disconnect(dispatch_uid="gone") is False
