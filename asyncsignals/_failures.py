"""What becomes of a receiver's error, on every path of a send.

- :func:`annotate`: the note that names the receiver and the signal;
- :func:`report`: the log line ``send_robust`` writes for each error it
  returns;
- :func:`combined`: several receivers' errors as one exception group;
- :func:`settle_failure`: whether the caller's cancellation wins over an
  error raised by a receiver awaited in the sender's task.

The frames that catch receivers' exceptions delete the locals that hold one
before they return: see :func:`report`.
"""

from __future__ import annotations

import logging
import reprlib
from typing import Final

from ._backends import CancelWatch
from ._receivers import describe, signal_label

__all__ = ["annotate", "combined", "logger", "report", "settle_failure"]

logger: Final = logging.getLogger("asyncsignals")


def annotate(signal: object, exc: BaseException, receiver: object) -> None:
    """Add a note naming the receiver and the signal, if the exception takes one.

    An exception that refuses it (a frozen dataclass, ``__notes__`` that is
    not a list) is raised as it is: the note is never worth replacing the
    receiver's own error.
    """
    note = f"raised by receiver {describe(receiver)} of signal {signal_label(signal)}"
    try:
        if note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
    except Exception:
        pass


def report(
    signal: object, exc: Exception, receiver: object, sender: object, superseded: bool = False
) -> Exception:
    """Log a receiver's exception for send_robust, which returns it as the result.

    ``superseded``: the caller's cancellation propagates instead of this
    exception (in ``send`` too), so the log is where it is seen.

    The frame that caught it is in its traceback, so that frame must not
    keep it, or the results that hold it, once the send is done: callers
    ``del`` those locals. Otherwise the exception and the frame form a
    reference cycle that keeps the receiver and the sender alive until the
    garbage collector's next pass, after the caller has let go.
    """
    logger.error(
        "receiver %s of signal %s raised %s (sender: %s)%s",
        describe(receiver),
        signal_label(signal),
        type(exc).__name__,
        reprlib.repr(sender),
        "; the caller's cancellation propagates instead" if superseded else "",
        exc_info=exc,
    )
    return exc


async def settle_failure(
    signal: object,
    watch: CancelWatch,
    exc: Exception,
    receiver: object,
    sender: object,
    robust: bool,
) -> bool:
    """A receiver awaited in the sender's task raised ``exc``: what becomes of it.

    The caller's cancellation, if it stands, is raised instead (in send,
    ``exc`` is then logged, never lost). Otherwise send gets False, to raise
    ``exc`` itself (annotated, traceback intact), and send_robust True, to
    return it (reported).
    """
    try:
        if robust:
            report(signal, exc, receiver, sender)
            await watch.raise_if_caller_cancelled()
            return True
        try:
            await watch.raise_if_caller_cancelled()
        except BaseException:
            report(signal, exc, receiver, sender, superseded=True)
            raise
        annotate(signal, exc, receiver)
        return False
    finally:
        del exc  # see report: no cycle through a kept exception


def combined(errors: list[BaseException], label: str) -> BaseException:
    """One error as itself; several as a group naming the signal."""
    if len(errors) == 1:
        return errors[0]
    message = f"{len(errors)} receivers of signal {label} failed"
    exceptions = [error for error in errors if isinstance(error, Exception)]
    if len(exceptions) == len(errors):
        return ExceptionGroup(message, exceptions)
    return BaseExceptionGroup(message, errors)
