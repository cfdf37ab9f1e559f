"""A report's run in a terminal: ``jupyter deepanalyze report`` drives one run to its notebook.

Owns driving the agent into a ``RunRecorder`` while the terminal's signals are handled —
the first Ctrl-C (or SIGTERM) cancels the run cleanly; a second Ctrl-C, or a SIGTERM'd
cancel that takes too long (a kernel busy with code that ignores interrupts), abandons it:
the recorder gets the events that close the run (a status cell, ``run_finished``), so the
notebook is written with what exists before the command exits (SIGKILL aside) — and the
run on a kernel gateway, whose folder comes back into the local run folder.

Must not parse options or write files (``cli`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .agent import Agent, Task
from .config import DeepAnalyze
from .execution import ExecutionFailure, Executor
from .execution.pool import KernelPool
from .llm import ChatModel
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
    config: DeepAnalyze, model: ChatModel, executor: Executor, task: Task, progress: Progress, stderr: TextIO
) -> Recorded:
    """Run ``task``, showing progress; stopped by Ctrl-C or SIGTERM as the module says."""
    agent = Agent.from_config(config, model, executor)
    recorder = RunRecorder()
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


async def record_on_gateway(
    config: DeepAnalyze,
    model: ChatModel,
    kernel_name: str,
    question: str,
    folder: Path,
    names: list[str],
    progress: Progress,
    stderr: TextIO,
) -> Recorded:
    """The report's run in a kernel on ``config.gateway_url``: the run folder's files go to
    the kernel's side (shipped, or through ``shared_workdir``) and what the run leaves
    there comes back into the run folder, so the report reads as a local one."""
    async with KernelPool.from_config(config, 1, kernel_name=kernel_name) as pool:
        async with pool.session([folder / name for name in names], name=folder.name) as kernel:
            progress.line(f"run folder {kernel.workdir}/ on {config.gateway_url} ({len(kernel.files)} data files)")
            try:
                task = Task(question, kernel.files)
                return await record_in_terminal(config, model, kernel.executor, task, progress, stderr)
            finally:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await pool.folders.collect(kernel.executor, kernel.workdir, folder)
                    except ExecutionFailure as exc:  # the report is written all the same
                        progress.line(f"the run folder's files stay on the kernel's side: {exc}")
