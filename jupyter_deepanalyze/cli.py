"""``jupyter deepanalyze``: headless front doors on the core.

Owns argument parsing, progress lines on stderr, exit codes and file placement for
``report`` (a report notebook from data files), ``models`` (which model a spec
resolves to, and whether it answers), ``eval`` (a benchmark run, ``eval/``) and
``bench`` (the harness's performance, ``eval/bench.py``).

Must not duplicate agent logic: runs go through ``Agent`` and ``NotebookBuilder``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from ._version import __version__
from .agent import Agent, Task
from .config import DeepAnalyze
from .demo import DEMO_FILE, DEMO_QUESTION, write_demo_data
from .events import Event, ExecutionFinished, RunFinished, RunStarted, SegmentFinished
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
        help="model spec: an OpenAI-compatible URL such as http://localhost:8000/v1, "
        "'vllm:ID_OR_PATH', 'transformers:ID_OR_PATH', 'tiny' (a CPU smoke-test model) or 'auto' "
        "(default: $DEEPANALYZE_MODEL, else auto)",
    )
    parser.add_argument("--model-name", help="served model name (default: ask the server)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-rounds", type=int, help="most model turns (default 30)")
    parser.add_argument("--max-tokens", type=int, help="most tokens per model turn")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.5)")
    parser.add_argument("--timeout", type=float, help="seconds one code block may run (default 600)")
    parser.add_argument(
        "--parity",
        action="store_true",
        default=None,
        help="tell the model exactly what the reference loop would (fresh globals per block, "
        "its output and error text, no cap): DeepAnalyze.parity",
    )


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
    report.add_argument(
        "--demo",
        action="store_true",
        help=f"add a generated demo dataset ({DEMO_FILE}) to the run folder",
    )
    report.add_argument(
        "-q", "--question", help="what to analyze (default with --demo: a question about it)"
    )
    report.add_argument("-o", "--output", required=True, metavar="OUT.ipynb", help="notebook to write")
    _add_model_options(report)
    _add_run_options(report)
    report.add_argument("--html", action="store_true", help="also write OUT.html")
    report.add_argument("--force", action="store_true", help="overwrite OUT and its run folder")
    report.add_argument("--kernel", default="python3", help="kernel name (default python3)")

    models = commands.add_parser("models", help="show the resolved model and whether it answers")
    _add_model_options(models)
    _add_eval_parser(commands)
    _add_bench_parser(commands)
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
        "parity": getattr(args, "parity", None),
    }
    for name, value in overrides.items():
        if value is not None:
            try:
                setattr(config, name, value)
            except Exception as exc:  # traitlets validation: one line, no traceback
                raise UsageError(f"--{name.replace('_', '-')}: {exc}") from None
    return config


class CtrlC:
    """While active, the first Ctrl-C calls ``stop`` (a clean stop); a second quits at once."""

    def __init__(self, stop: Callable[[], None], message: str, stderr: TextIO) -> None:
        self.stop = stop
        self.message = message
        self.stderr = stderr
        self.count = 0

    def _pressed(self) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        print(f"\n{self.message}", file=self.stderr, flush=True)
        self.stop()

    def __enter__(self) -> CtrlC:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


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
    if not args.question:
        if not args.demo:
            raise UsageError("the question is missing: pass -q QUESTION")
        args.question = DEMO_QUESTION
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
        if args.demo:
            if DEMO_FILE in names:
                raise UsageError(f"an input is already named {DEMO_FILE}")
            names.append(write_demo_data(folder).name)
        task = Task(question=args.question, files=list_data_files(folder, names))
        progress.line(f"run folder {folder}/ ({len(task.files)} data files)")
        executor = await KernelExecutor.start(
            args.kernel, cwd=folder.resolve(), feedback=config.feedback_options()
        )
        try:
            agent = Agent.from_config(config, model, executor)
            builder = NotebookBuilder()
            finished: RunFinished | None = None
            with CtrlC(agent.cancel, "Stopping (Ctrl-C again to quit at once)…", stderr):
                async for event in agent.run(task):
                    builder.apply(event)
                    progress.show(event)
                    if isinstance(event, RunFinished):
                        finished = event
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


# ------------------------------------------------------------------ eval and bench


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
    from .eval.benchmarks import BENCHMARKS

    parser = commands.add_parser(
        "eval",
        help="run a benchmark and score it",
        description="Run the agent on benchmark tasks, each in a pooled kernel whose working "
        "folder holds the task's files; write per-task trajectories (JSONL) and notebooks, "
        "summary.json and accuracy.png to OUT. Tasks already finished in OUT are skipped "
        "(rerun the same command to resume); a task that crashes is recorded as failed.",
    )
    parser.add_argument("bench", metavar="BENCH", choices=sorted(BENCHMARKS), help=" or ".join(sorted(BENCHMARKS)))
    parser.add_argument("--data", metavar="DIR", help="benchmark folder (dabench default: ../shared/benchmarks/dabench)")
    parser.add_argument("--ids", help="only these task ids, comma-separated (e.g. 0,5,7)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N (selected) tasks")
    parser.add_argument("--concurrency", type=int, default=1, metavar="K", help="tasks at once, one kernel each (default 1)")
    parser.add_argument("--out", metavar="DIR", help="results folder (default eval-BENCH)")
    parser.add_argument("--retry-failed", action="store_true", help="run tasks recorded as failed again")
    parser.add_argument("--kernel", default="python3", help="kernel name (default python3)")
    _add_model_options(parser)
    _add_run_options(parser)


def _task_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise UsageError("--ids: give task ids separated by commas, e.g. --ids 0,5,7")
    return ids


async def _eval(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .eval.benchmarks import BenchmarkError, open_benchmark, select_tasks
    from .eval.progress import ProgressBar
    from .eval.runner import EvalOutputError, EvalRunner

    config = _config(args)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    try:
        benchmark = open_benchmark(args.bench, Path(args.data).expanduser() if args.data else None)
        tasks = select_tasks(benchmark.tasks, _task_ids(args.ids), args.limit)
    except BenchmarkError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out or f"eval-{args.bench}").expanduser()
    model = await open_model(config)
    try:
        runner = EvalRunner(
            benchmark,
            tasks,
            config=config,
            model=model,
            out=out,
            concurrency=args.concurrency,
            kernel_name=args.kernel,
            retry_failed=args.retry_failed,
        )
        try:
            pending = runner.prepare()
        except EvalOutputError as exc:
            raise UsageError(str(exc)) from None
        bar = ProgressBar(args.bench, len(tasks), stderr, already_done=len(tasks) - len(pending))
        for record in runner.records.values():
            bar.count_resumed(record)
        runner.on_result = bar.update
        message = (
            "Stopping: finished tasks are kept; rerun the same command to resume "
            "(Ctrl-C again to quit at once)…"
        )
        bar.start()
        try:
            with CtrlC(runner.stop, message, stderr) as interrupts:
                summary = await runner.run()
        finally:
            bar.close()
    finally:
        await model.aclose()
    metrics = "  ".join(
        f"{name.upper()} {summary[name]:.1%}" for name in ("abq", "psaq", "uasq") if name in summary
    ) or f"accuracy {summary['accuracy']:.1%}"
    failed = summary["statuses"].get("failed", 0)
    print(
        f"{summary['benchmark']}: n={summary['n']}  {metrics}  "
        f"(right {summary['correct']}, failed {failed}{' counted as wrong' if failed else ''})",
        file=stdout,
    )
    print(f"wrote {out / 'summary.json'}, {out / 'accuracy.png'}, trajectories/ and notebooks/", file=stdout)
    if interrupts.count:
        print(f"jupyter deepanalyze: stopped with {len(summary['pending'])} tasks to go; rerun to resume", file=stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    from .eval.bench import BenchOptions

    parser = commands.add_parser(
        "bench",
        help="measure the harness's own overhead (scripted policy, no model needed)",
        description="Measure, side by side in one run: per-execution overhead of a warm kernel "
        "versus a fresh Python process per code block (and the raw jupyter_client floor), "
        "agent-loop overhead per round, eval throughput at concurrency 1 and 2, and memory "
        "per pooled kernel. The model is a scripted policy with zero latency that is part of "
        "the benchmark (jupyter_deepanalyze.eval.scripted_policy), never a model default.",
    )
    defaults = BenchOptions()
    parser.add_argument("--repeat", type=int, default=defaults.repeat, metavar="N",
                        help=f"samples per execution method (default {defaults.repeat})")
    parser.add_argument("--runs", type=int, default=defaults.runs, metavar="N",
                        help=f"scripted agent runs (default {defaults.runs})")
    parser.add_argument("--tasks", type=int, default=defaults.tasks, metavar="N",
                        help=f"eval tasks per concurrency level (default {defaults.tasks})")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--kernel", default="python3", help="kernel name (default python3)")


async def _bench(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from .eval.bench import BenchError, BenchOptions, print_report, run_bench

    for name in ("repeat", "runs", "tasks"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    options = BenchOptions(repeat=args.repeat, runs=args.runs, tasks=args.tasks, kernel=args.kernel)
    progress = Progress(stderr)
    try:
        report = await run_bench(options, log=progress.line)
    except BenchError as exc:
        print(f"jupyter deepanalyze: {exc}", file=stderr)
        return EXIT_FAILED
    print_report(report, stdout, Path(args.json).expanduser() if args.json else None)
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
        if args.command == "eval":
            return asyncio.run(_eval(args, sys.stdout, sys.stderr))
        if args.command == "bench":
            return asyncio.run(_bench(args, sys.stdout, sys.stderr))
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
