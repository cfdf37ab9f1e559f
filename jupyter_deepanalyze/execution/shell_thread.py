"""Handing work to the thread that owns an IPython shell, and interrupting that thread.

Owns ``ShellThreadQueue`` (calls other threads hand to the shell's thread, which runs
them when it pumps; a Ctrl-C inside one is reported as ``KeyboardInterruptInCall`` and
raised on), ``keyboard_interrupts`` (SIGINT raises ``KeyboardInterrupt`` meanwhile) and
``raise_keyboard_interrupt`` (a real SIGINT for the main thread, which also wakes blocking
calls; an asynchronous exception for any other thread).

The magic's agent loop runs on a worker thread while ipykernel ties displays and outputs
to the cell the shell's thread is running: code blocks and prompts must run there.

Must not know about code blocks or outputs (``inprocess`` and ``capture`` do).
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextlib
import ctypes
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import ExecutionFailure

T = TypeVar("T")


class ShellThreadClosed(ExecutionFailure):
    """The shell's thread stopped taking work (the run it served has ended)."""


class ShellThreadQueue:
    """Calls other threads hand to the thread that owns the IPython shell.

    Create it on the shell's thread; that thread runs the calls when it ``pump``\\ s.
    """

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any] | None]] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._closing = threading.Lock()  # no call may slip in after close() drained

    def post(self, call: Callable[[], Any]) -> None:
        """Run ``call`` on the shell's thread; nobody waits for it."""
        with self._closing:
            if not self._closed:
                self._calls.put((call, None))

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``call`` on the shell's thread; the future holds what it returns or raises.

        A ``KeyboardInterrupt`` in ``call`` (Ctrl-C) becomes the future's exception
        ``KeyboardInterruptInCall`` and is raised on in the shell's thread as well.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._closing:
            if not self._closed:
                self._calls.put((call, future))
                return future
        future.set_exception(ShellThreadClosed("the run has ended"))
        return future

    def pump(self, timeout: float, before_submitted: Callable[[], None] | None = None) -> bool:
        """Run the waiting calls, waiting up to ``timeout`` seconds for the first one.

        ``before_submitted`` runs before each call someone waits for (a code block, a
        prompt): the magic brings its display up to date there. Returns False when no
        call came. Must be called on the shell's thread.
        """
        try:
            item = self._calls.get(timeout=timeout)
        except queue.Empty:
            return False
        while True:
            if item[1] is not None and before_submitted is not None:
                before_submitted()
            self._run(*item)
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return True

    def close(self) -> None:
        """Take no more calls; waiting ones are dropped and their futures cancelled."""
        with self._closing:
            self._closed = True
        while True:
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future is not None:
                future.cancel()

    @staticmethod
    def _run(call: Callable[[], Any], future: concurrent.futures.Future[Any] | None) -> None:
        if future is None:
            call()
            return
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except KeyboardInterrupt:
            future.set_exception(KeyboardInterruptInCall())
            raise
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class KeyboardInterruptInCall(Exception):
    """Ctrl-C interrupted a call handed to the shell's thread."""


@contextlib.contextmanager
def keyboard_interrupts() -> Iterator[None]:
    """On the main thread: SIGINT raises ``KeyboardInterrupt`` (Python's default) meanwhile.

    ipykernel installs that handler while it runs a cell, but not for cells with a
    top-level ``await``; the interrupts of this module rely on it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def raise_keyboard_interrupt(thread_id: int) -> None:
    """Make ``thread_id`` raise ``KeyboardInterrupt`` as soon as it can.

    The main thread gets a real ``SIGINT`` (if a Python handler is installed), which
    also wakes it from blocking calls; another thread gets an asynchronous exception,
    delivered at its next bytecode.
    """
    main = threading.main_thread().ident
    if thread_id == main and callable(signal.getsignal(signal.SIGINT)):
        if hasattr(signal, "pthread_kill"):
            signal.pthread_kill(thread_id, signal.SIGINT)
        else:  # Windows: no per-thread signals; blocking calls finish first
            _thread.interrupt_main()
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))


__all__ = [
    "KeyboardInterruptInCall",
    "ShellThreadClosed",
    "ShellThreadQueue",
    "keyboard_interrupts",
    "raise_keyboard_interrupt",
]
