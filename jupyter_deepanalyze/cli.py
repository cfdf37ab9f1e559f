"""``jupyter deepanalyze``: the headless front doors, one Jupyter application.

Owns ``DeepAnalyzeApp`` (a ``jupyter_core`` ``JupyterApp``, as nbclient's
``NbClientApp``) and its subcommands ``report`` (a report notebook from data files,
``cli_report``), ``eval`` (a benchmark run, ``eval/``), ``models`` (which model a spec resolves to, and
whether it answers) and ``bench`` (the harness's performance, ``eval/bench.py``). Every
option is an alias or a flag of a trait — a ``DeepAnalyze`` setting or one of the
subcommand's own — so ``--help-all``, ``jupyter_deepanalyze_config.py`` (or ``.json``)
in the Jupyter config path and the command line set the same settings, the command line
winning (``command.DeepAnalyzeCommand`` reads them, and turns bad input into one line).
Also owns what each command prints, its exit status and where its files go.

Must not duplicate agent logic: runs go through ``Agent`` and ``RunRecorder``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from jupyter_core.application import base_aliases, base_flags
from traitlets import Bool, Int, Unicode

from .cli_report import ReportApp, gateway_settings
from .command import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    GATEWAY_ALIASES,
    MODEL_ALIASES,
    RUN_ALIASES,
    RUN_FLAGS,
    DeepAnalyzeCommand,
    UsageError,
    flags_of,
)
from .config import DeepAnalyze
from .eval.bench import BenchOptions
from .execution import ExecutionFailure
from .exports import ExportError
from .llm import ModelError
from .llm.registry import UnknownModelSpec, open_model
from .terminal import CtrlC, Progress
from .workspace import WorkspaceError

# ------------------------------------------------------------------------ models


class ModelsApp(DeepAnalyzeCommand):
    name = "jupyter-deepanalyze-models"
    description = (
        "Show what a model spec resolves to (name, dialect, context window when cheaply known) and "
        "whether it can run, without loading weights or starting vLLM."
    )
    examples = "jupyter deepanalyze models --model http://localhost:8000/v1"
    aliases = {**base_aliases, **MODEL_ALIASES}

    def run(self) -> int:
        self.no_arguments()
        return asyncio.run(_models(self.settings(), sys.stdout))


async def _models(config: DeepAnalyze, stdout: TextIO) -> int:
    """What the spec stands for and whether it can run, without loading or starting it."""
    from .llm.description import describe

    described = await describe(config.model, config)
    if not described.resolved:  # a bad spec, or nothing for 'auto' to find
        raise ModelError(described.error or f"cannot resolve {described.spec!r}")
    spec = described.spec
    if described.resolved != spec:
        spec = f"{spec} ({described.resolved})"
    print(f"spec:    {spec}", file=stdout)
    print(f"name:    {described.name or '?'}", file=stdout)
    print(f"dialect: {described.dialect}", file=stdout)
    if described.context_window:
        print(f"context: {described.context_window} tokens", file=stdout)
    if not described.available:
        print("status:  unavailable", file=stdout)
        raise ModelError(described.error or "the model is unavailable")
    print("status:  available", file=stdout)
    return EXIT_OK


# -------------------------------------------------------------------------- eval


class EvalApp(DeepAnalyzeCommand):
    name = "jupyter-deepanalyze-eval"
    description = (
        "Run the agent on benchmark tasks (BENCH: dabench or tableqa), each in a pooled kernel "
        "whose working folder holds the task's files; write per-task trajectories (JSONL) and "
        "notebooks, summary.json and accuracy.png to OUT. Tasks already finished in OUT are "
        "skipped (rerun the same command to resume); a task that crashes is recorded as failed."
    )
    examples = "jupyter deepanalyze eval dabench --ids 0,5 --model http://localhost:8000/v1 --out eval-dabench"

    benchmark = Unicode("", help="The benchmark (also the command line's BENCH): dabench or tableqa.").tag(
        config=True
    )
    data = Unicode(
        "", help="Benchmark folder (empty: dabench reads ../shared/benchmarks/dabench or $DEEPANALYZE_SHARED)."
    ).tag(config=True)
    ids = Unicode("", help="Only these task ids, comma-separated (e.g. 0,5,7); empty: all.").tag(config=True)
    limit = Int(None, allow_none=True, min=1, help="Only the first N (selected) tasks.").tag(config=True)
    concurrency = Int(1, min=1, help="Tasks at once, one kernel each.").tag(config=True)
    out = Unicode("", help="Results folder (empty: eval-BENCH).").tag(config=True)
    retry_failed = Bool(False, help="Run tasks recorded as failed again.").tag(config=True)
    kernel_name = Unicode("python3", help="The Jupyter kernel the model's code runs in.").tag(config=True)

    def run(self) -> int:
        return asyncio.run(self._eval(sys.stdout, sys.stderr))

    def _bench_name(self) -> str:
        from .eval.benchmarks import BENCHMARKS

        if len(self.extra_args) > 1:
            raise UsageError(f"unexpected argument {self.extra_args[1]!r}: give one benchmark")
        name = self.extra_args[0] if self.extra_args else self.benchmark
        names = " or ".join(sorted(BENCHMARKS))
        if not name:
            raise UsageError(f"the benchmark is missing: jupyter deepanalyze eval BENCH ({names})")
        if name not in BENCHMARKS:
            raise UsageError(f"unknown benchmark {name!r}: use {names}")
        return name

    def _task_ids(self) -> list[str] | None:
        if not self.ids:
            return None
        ids = [part.strip() for part in self.ids.split(",") if part.strip()]
        if not ids:
            raise UsageError("--ids: give task ids separated by commas, e.g. --ids 0,5,7")
        return ids

    async def _eval(self, stdout: TextIO, stderr: TextIO) -> int:
        from .eval.benchmarks import BenchmarkError, open_benchmark, select_tasks
        from .eval.progress import ProgressBar
        from .eval.runner import EvalOutputError, EvalRunner

        bench = self._bench_name()
        config = gateway_settings(self.settings())
        try:
            benchmark = open_benchmark(bench, Path(self.data).expanduser() if self.data else None)
            tasks = select_tasks(benchmark.tasks, self._task_ids(), self.limit)
        except BenchmarkError as exc:
            raise UsageError(str(exc)) from None
        out = Path(self.out or f"eval-{bench}").expanduser()
        model = await open_model(config)
        try:
            runner = EvalRunner(
                benchmark,
                tasks,
                config=config,
                model=model,
                out=out,
                concurrency=self.concurrency,
                kernel_name=self.kernel_name,
                retry_failed=self.retry_failed,
            )
            try:
                pending = runner.prepare()
            except EvalOutputError as exc:
                raise UsageError(str(exc)) from None
            bar = ProgressBar(bench, len(tasks), stderr, already_done=len(tasks) - len(pending))
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
            to_go = len(summary["pending"])
            print(f"jupyter deepanalyze: stopped with {to_go} tasks to go; rerun to resume", file=stderr)
            return EXIT_INTERRUPTED
        return EXIT_OK


EvalApp.aliases = {
    **base_aliases,
    **MODEL_ALIASES,
    **RUN_ALIASES,
    **GATEWAY_ALIASES,
    **{name: f"EvalApp.{name}" for name in ("data", "ids", "limit", "concurrency", "out")},
    "kernel": "EvalApp.kernel_name",
}
EvalApp.flags = {**base_flags, **RUN_FLAGS, **flags_of(EvalApp, "retry_failed")}


# ------------------------------------------------------------------------- bench


class BenchApp(DeepAnalyzeCommand):
    name = "jupyter-deepanalyze-bench"
    description = (
        "Measure, side by side in one run: per-execution overhead of a warm kernel versus a "
        "fresh Python process per code block (and the raw jupyter_client floor), agent-loop "
        "overhead per round, eval throughput at concurrency 1 and 2, memory per pooled "
        "kernel, and kernels on a Jupyter kernel gateway against local ones. The model is a "
        "scripted policy with zero latency that is part of the benchmark "
        "(jupyter_deepanalyze.eval.scripted_server), never a model default."
    )
    examples = "jupyter deepanalyze bench --repeat 20 --json bench.json"

    repeat = Int(BenchOptions.repeat, min=1, help="Samples per execution method and workload.").tag(config=True)
    runs = Int(BenchOptions.runs, min=1, help="Scripted agent runs (four rounds each).").tag(config=True)
    tasks = Int(BenchOptions.tasks, min=1, help="Eval tasks per concurrency level.").tag(config=True)
    json = Unicode("", help="Also write the numbers to this JSON file.").tag(config=True)
    kernel_name = Unicode("python3", help="The Jupyter kernel the measurements run in.").tag(config=True)
    gateway = Bool(
        BenchOptions.gateway,
        help=(
            "Measure kernels on a gateway against local kernels (5): on --gateway-url, else on a "
            "Jupyter Kernel Gateway started on 127.0.0.1 (pip install jupyter_kernel_gateway)."
        ),
    ).tag(config=True)
    local_models = Bool(
        False,
        help="Also measure in-process inference on the tiny model (loads it; needs the tiny extra): "
        "tokens/s of each installed local backend, and time to first token at round 1 and round 8.",
    ).tag(config=True)

    def run(self) -> int:
        self.no_arguments()
        return asyncio.run(self._bench(sys.stdout, sys.stderr))

    async def _local_models(self, stdout: TextIO, log: Callable[[str], None]) -> None:
        from .eval.bench_local import local_models_json, measure_local_models, render_local_models

        results = await measure_local_models(log=log)
        print("\n" + render_local_models(results), file=stdout, flush=True)
        if self.json:
            path = Path(self.json).expanduser()
            numbers = json.loads(path.read_text(encoding="utf-8"))
            path.write_text(json.dumps({**numbers, "local_models": local_models_json(results)}, indent=2) + "\n")

    async def _bench(self, stdout: TextIO, stderr: TextIO) -> int:
        from .eval.bench import BenchError, print_report, run_bench

        config = gateway_settings(self.settings())
        options = BenchOptions(
            repeat=self.repeat,
            runs=self.runs,
            tasks=self.tasks,
            kernel=self.kernel_name,
            gateway=self.gateway,
            gateway_url=config.gateway_url,
        )
        progress = Progress(stderr)
        try:
            report = await run_bench(options, log=progress.line, gateway_token=config.gateway_token)
        except BenchError as exc:
            print(f"jupyter deepanalyze: {exc}", file=stderr)
            return EXIT_FAILED
        print_report(report, stdout, Path(self.json).expanduser() if self.json else None)
        if self.local_models:
            await self._local_models(stdout, progress.line)
        return EXIT_OK


BenchApp.aliases = {
    **base_aliases,
    **{name: f"BenchApp.{name}" for name in ("repeat", "runs", "tasks", "json")},
    "kernel": "BenchApp.kernel_name",
    "gateway-url": "DeepAnalyze.gateway_url",
    "gateway-token": "DeepAnalyze.gateway_token",
}
BenchApp.flags = {
    **base_flags,
    "no-gateway": ({"BenchApp": {"gateway": False}}, "Skip measurement (5), kernels on a gateway."),
    **flags_of(BenchApp, "local_models"),
}


# --------------------------------------------------------------------- the app

class DeepAnalyzeApp(DeepAnalyzeCommand):
    name = "jupyter-deepanalyze"
    description = "DeepAnalyze: an autonomous data-science agent running in Jupyter kernels."
    examples = "jupyter deepanalyze report --demo -o demo-report.ipynb --model tiny --max-rounds 4"
    subcommands = {
        "report": (ReportApp, "Analyze data files and write a report notebook."),
        "eval": (EvalApp, "Run a benchmark and score it."),
        "models": (ModelsApp, "Show the resolved model and whether it answers."),
        "bench": (BenchApp, "Measure the harness's own overhead (a scripted policy, no model needed)."),
    }
    classes = [DeepAnalyze, ReportApp, EvalApp, ModelsApp, BenchApp]

    def run(self) -> int:
        if self.subapp is not None:
            return self.subapp.run()
        if self.generate_config:
            self.write_default_config()
            return EXIT_OK
        if self.extra_args:
            raise UsageError(
                f"unknown command {self.extra_args[0]!r}: use one of {', '.join(self.subcommands)} (--help)"
            )
        with contextlib.redirect_stdout(sys.stderr):  # no command: the usage, as an error
            self.print_help()
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    app = DeepAnalyzeApp()
    try:
        app.initialize(list(argv) if argv is not None else None)
        command = app.subapp or app
        if command.show_config or command.show_config_json:  # --show-config: the settings, not a run
            command.start_show_config()
            return EXIT_OK
        return app.run()
    except (UsageError, WorkspaceError, UnknownModelSpec) as exc:
        print(f"jupyter deepanalyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, ExecutionFailure, ExportError) as exc:
        print(f"jupyter deepanalyze: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("jupyter deepanalyze: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
