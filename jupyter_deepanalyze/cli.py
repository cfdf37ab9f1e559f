"""``jupyter deepanalyze``: headless front doors on the core.

Owns argument parsing, progress lines on stderr, exit codes and file placement for
``report`` (a report notebook from data files) and ``models`` (which model a spec
resolves to, and whether it answers).

Must not duplicate agent logic: runs go through ``Agent`` and ``NotebookBuilder``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ._version import __version__
from .agent import Agent, Task
from .config import DeepAnalyze
from .events import CellCreated, Event, ExecutionFinished, RunFinished, RunStarted, SegmentFinished
from .execution import ExecutionFailure
from .execution.kernel import KernelExecutor
from .llm import ModelError
from .llm.registry import open_model
from .notebook import NotebookBuilder, attach_images, write_notebook
from .workspace import WorkspaceError, list_data_files, stage_inputs

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments: reported as one line, exit code 2."""


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="model spec: an OpenAI-compatible URL such as http://localhost:8000/v1, or 'auto' "
        "(default: $DEEPANALYZE_MODEL, else auto)",
    )
    parser.add_argument("--model-name", help="served model name (default: ask the server)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter deepanalyze",
        description="DeepAnalyze: an autonomous data-science agent running in Jupyter kernels.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    report = commands.add_parser(
        "report",
        help="analyze data files and write a report notebook",
        description="Run the agent on data files in a fresh kernel and write the analysis "
        "as a notebook. The files are copied into a run folder (OUT's name + '_files') that "
        "is the kernel's working directory; the originals are never modified.",
    )
    report.add_argument("paths", nargs="*", metavar="PATH", help="data files or folders")
    report.add_argument("-q", "--question", required=True, help="what to analyze")
    report.add_argument("-o", "--output", required=True, metavar="OUT.ipynb", help="notebook to write")
    _add_model_options(report)
    report.add_argument("--max-rounds", type=int, help="most model turns (default 30)")
    report.add_argument("--max-tokens", type=int, help="most tokens per model turn")
    report.add_argument("--temperature", type=float, help="sampling temperature (default 0.5)")
    report.add_argument("--timeout", type=float, help="seconds one code block may run (default 600)")
    report.add_argument("--html", action="store_true", help="also write OUT.html")
    report.add_argument("--force", action="store_true", help="overwrite OUT and its run folder")
    report.add_argument("--kernel", default="python3", help="kernel name (default python3)")

    models = commands.add_parser("models", help="show the resolved model and whether it answers")
    _add_model_options(models)
    return parser


def _config(args: argparse.Namespace) -> DeepAnalyze:
    config = DeepAnalyze()
    overrides = {
        "model": args.model,
        "model_name": args.model_name,
        "max_rounds": getattr(args, "max_rounds", None),
        "max_tokens": getattr(args, "max_tokens", None),
        "temperature": getattr(args, "temperature", None),
        "execution_timeout": getattr(args, "timeout", None),
    }
    for name, value in overrides.items():
        if value is not None:
            try:
                setattr(config, name, value)
            except Exception as exc:  # traitlets validation: one line, no traceback
                raise UsageError(f"--{name.replace('_', '-')}: {exc}") from None
    return config


class Progress:
    """One line per finished step on stderr: elapsed time, step, tag, a preview."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.line(f"model {event.model}")
        elif isinstance(event, SegmentFinished):
            preview = " ".join(event.text.split())[:70]
            self.line(f"step {event.step:<3} {event.tag or 'note':<10} {preview}")
        elif isinstance(event, ExecutionFinished):
            count = f" [{event.execution_count}]" if event.execution_count else ""
            self.line(f"         ran: {event.status}{count}")
        elif isinstance(event, RunFinished):
            self.line(f"run {event.status}" + (f": {event.error}" if event.error else ""))


def _prepare_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    out = Path(args.output).expanduser()
    if out.suffix != ".ipynb":
        raise UsageError(f"the output must be an .ipynb file, not {args.output!r}")
    folder = out.with_name(out.stem + "_files")
    for path in (out, folder) + ((out.with_suffix(".html"),) if args.html else ()):
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
    for raw in args.paths:
        source = Path(raw).expanduser()
        if not source.exists():
            raise UsageError(f"no such file or folder: {raw}")
        if source.resolve().is_relative_to(folder.resolve()):
            raise UsageError(f"{raw} is inside the run folder {folder}, which the run replaces")
    if folder.exists():
        shutil.rmtree(folder)
    return out, folder


async def _report(args: argparse.Namespace, stderr: TextIO) -> int:
    config = _config(args)
    out, folder = _prepare_paths(args)
    model = await open_model(config)
    progress = Progress(stderr)
    try:
        names = stage_inputs(args.paths, folder)
        task = Task(question=args.question, files=list_data_files(folder, names))
        progress.line(f"run folder {folder}/ ({len(task.files)} data files)")
        executor = await KernelExecutor.start(args.kernel, cwd=folder.resolve())
        try:
            agent = Agent.from_config(config, model, executor)
            builder = NotebookBuilder()
            loop = asyncio.get_running_loop()
            interrupts = 0

            def on_sigint() -> None:
                nonlocal interrupts
                interrupts += 1
                if interrupts > 1:
                    raise KeyboardInterrupt
                print("\nStopping (Ctrl-C again to quit at once)…", file=stderr, flush=True)
                agent.cancel()

            loop.add_signal_handler(signal.SIGINT, on_sigint)
            try:
                finished: RunFinished | None = None
                async for event in agent.run(task):
                    builder.apply(event)
                    progress.show(event)
                    if isinstance(event, RunFinished):
                        finished = event
            finally:
                loop.remove_signal_handler(signal.SIGINT)
        finally:
            await executor.shutdown()
    finally:
        await model.aclose()
    notebook = builder.notebook
    attach_images(notebook, folder)
    written = write_notebook(notebook, out, html=args.html)
    assert finished is not None
    progress.line("wrote " + ", ".join(str(p) for p in written))
    if finished.status == "completed":
        return EXIT_OK
    reason = {
        "cancelled": "the run was cancelled",
        "max_rounds": f"the run stopped after {agent.max_rounds} rounds without a final answer",
    }.get(finished.status, finished.error or "the run failed")
    print(f"jupyter deepanalyze: {reason}", file=stderr)
    return EXIT_INTERRUPTED if finished.status == "cancelled" else EXIT_FAILED


async def _models(args: argparse.Namespace, stdout: TextIO) -> int:
    config = _config(args)
    model = await open_model(config)
    try:
        limit = getattr(model, "max_model_len", None)
        print(f"spec:    {model.spec}", file=stdout)
        print(f"name:    {model.name}", file=stdout)
        print(f"dialect: {model.dialect.name}", file=stdout)
        if limit:
            print(f"context: {limit} tokens", file=stdout)
        print("status:  answering", file=stdout)
    finally:
        await model.aclose()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "report":
            return asyncio.run(_report(args, sys.stderr))
        return asyncio.run(_models(args, sys.stdout))
    except (UsageError, WorkspaceError) as exc:
        print(f"jupyter deepanalyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, ExecutionFailure) as exc:
        print(f"jupyter deepanalyze: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("jupyter deepanalyze: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
