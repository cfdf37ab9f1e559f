"""A run in a terminal: ``jupyter deepanalyze report`` drives it to its notebook whatever happens.

Owns ``record_in_terminal``: the agent driven into a ``RunRecorder`` while the terminal's
signals are handled — the first Ctrl-C (or SIGTERM) cancels the run cleanly; a second
Ctrl-C, or a SIGTERM'd cancel that takes too long (a kernel busy with code that ignores
interrupts), abandons it: the recorder gets the events that close the run (a status
cell, ``run_finished``), so the notebook is written with what exists before the command
exits (SIGKILL aside).

Must not parse options or write files (``cli_report`` does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TextIO

from .agent import Agent, Task
from .recorder import RunRecorder, record_run
from .terminal import CtrlC, Progress

QUIT_ERROR = "The command was stopped before the run could wind down; the kernel was shut down."
TERMINATED_ERROR = "The command was terminated (SIGTERM); the kernel was shut down."


@dataclass
class Recorded:
    """A run's recorder, and whether the command was terminated (SIGTERM) meanwhile."""

    recorder: RunRecorder
    terminated: bool = False


async def record_in_terminal(
    agent: Agent, task: Task, recorder: RunRecorder, progress: Progress, stderr: TextIO
) -> Recorded:
    """Run ``task`` with ``agent`` into ``recorder``, showing progress; stopped by Ctrl-C or
    SIGTERM as the module says."""
    quitting = asyncio.Event()
    stopper = CtrlC(agent.cancel, "Stopping (Ctrl-C again to quit at once)…", stderr, quit=quitting.set)
    with stopper:
        running = asyncio.ensure_future(record_run(agent, task, recorder, on_event=progress.show))
        quit_signal = asyncio.ensure_future(quitting.wait())
        await asyncio.wait({running, quit_signal}, return_when=asyncio.FIRST_COMPLETED)
        quit_signal.cancel()
        if running.done():
            running.result()  # an error of the recorder itself is not hidden
        else:
            # Not awaited: the worker may be waiting on a kernel that ignores interrupts;
            # shutting the kernel down afterwards ends it.
            running.cancel()
            for event in agent.abandon(TERMINATED_ERROR if stopper.terminated else QUIT_ERROR):
                recorder.apply(event)
                progress.show(event)
    return Recorded(recorder, stopper.terminated)
