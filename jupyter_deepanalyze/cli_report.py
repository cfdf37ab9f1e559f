"""``jupyter deepanalyze report``: a report notebook from data files, and follow-ups to it.

Owns ``ReportApp``: the run folder next to the notebook (``OUT_files/``, the inputs
copied in, the kernel's working directory), the run in a fresh kernel (here, or on a
kernel gateway with the folder shipped there and back), the notebook and its exports
(``--html``, ``--pdf``, ``--markdown``: ``exports``), the files the run wrote printed at
the end, and ``--continue NOTEBOOK.ipynb``: the run that notebook recorded is continued
— its kernel state rebuilt by running the notebook's code cells again in its run folder,
then the follow-up question asked with the recorded conversation, its cells appended to
the same notebook. The notebook is always written: a model that does not answer fails
the run (opened by the run itself), and Ctrl-C or SIGTERM end it through
``headless.record_in_terminal``. Also the exit status and ``gateway_settings``.

Must not duplicate agent logic: runs go through ``Agent`` and ``RunRecorder``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import nbformat
from jupyter_core.application import base_aliases, base_flags
from nbformat import NotebookNode
from traitlets import Bool, List, Unicode

from .agent import Agent, Task
from .artifacts import format_bytes
from .command import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    GATEWAY_ALIASES,
    MODEL_ALIASES,
    RUN_ALIASES,
    RUN_FLAGS,
    DeepAnalyzeCommand,
    UsageError,
    flags_of,
)
from .config import DeepAnalyze
from .conversation import Conversation
from .demo import DEMO_FILE, DEMO_QUESTION, write_demo_data
from .execution import ExecutionFailure, Executor
from .execution.gateway import GatewayError
from .execution.kernel import KernelExecutor
from .execution.pool import KernelPool
from .exports import EXPORT_FORMATS, export_path
from .headless import Recorded, record_in_terminal
from .llm import ChatModel
from .llm.registry import ModelOpenedOnReady, parse_spec
from .recorder import RunRecorder, recorded_conversation
from .terminal import Progress
from .workspace import data_listing, stage_inputs


@dataclass
class ReportPlan:
    """What one ``report`` command runs: a new report, or a follow-up to one (``follows``)."""

    question: str
    out: Path
    folder: Path
    names: list[str]
    """Top-level entries of the run folder the model is told about (all of them when continuing)."""
    kernel_name: str
    existing: NotebookNode | None = None
    follows: Conversation | None = None


class ReportApp(DeepAnalyzeCommand):
    name = "jupyter-deepanalyze-report"
    description = (
        "Run the agent on data files in a fresh kernel and write the analysis as a notebook. "
        "The files (PATHs) are copied into a run folder (OUT's name + '_files') that is the "
        "kernel's working directory; the originals are never modified. With --continue, "
        "continue the run a report notebook recorded: its code cells run again in its run "
        "folder, then the follow-up question's cells are appended to it. The notebook is always "
        "written. Exit status: 0 when the run completes, 1 when it fails or hits max rounds, 2 "
        "for bad arguments, 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM)."
    )
    examples = (
        'jupyter deepanalyze report data.csv -q "What drives churn?" -o churn.ipynb --model http://gpu:8000/v1\n'
        'jupyter deepanalyze report --continue churn.ipynb -q "And by region?" --pdf'
    )

    paths = List(Unicode(), help="Data files or folders to analyze (also the command line's PATHs).").tag(
        config=True
    )
    question = Unicode("", help=f"What to analyze (with --demo it may be left out: {DEMO_QUESTION!r}).").tag(
        config=True
    )
    output = Unicode("", help="The notebook to write (OUT.ipynb).").tag(config=True)
    continue_from = Unicode(
        "",
        help=(
            "A report notebook to continue (NOTEBOOK.ipynb, written by this command): its code "
            "cells run again in its run folder to rebuild the kernel, then the follow-up "
            "question (-q) continues the recorded conversation and its cells are appended to "
            "the same notebook (its exports are rewritten)."
        ),
    ).tag(config=True)
    html = Bool(False, help="Also write OUT.html.").tag(config=True)
    pdf = Bool(
        False,
        help="Also write OUT.pdf (nbconvert's webpdf, printed by /usr/bin/chromium or $DEEPANALYZE_CHROMIUM).",
    ).tag(config=True)
    markdown = Bool(False, help="Also write OUT.md, its images in OUT_images/.").tag(config=True)
    force = Bool(False, help="Overwrite OUT (and its exports) and its run folder.").tag(config=True)
    demo = Bool(False, help=f"Add a generated demo dataset ({DEMO_FILE}) to the run folder.").tag(config=True)
    kernel_name = Unicode(
        "python3",
        help="The Jupyter kernel the model's code runs in (continuing: the notebook's kernel unless given).",
    ).tag(config=True)

    def run(self) -> int:
        return asyncio.run(self._report(sys.stderr))

    @property
    def inputs(self) -> list[str]:
        return list(self.extra_args) or list(self.paths)

    @property
    def exports(self) -> list[str]:
        return [fmt for fmt in EXPORT_FORMATS if getattr(self, fmt)]

    def _plan(self) -> ReportPlan:
        return self._continuation() if self.continue_from else self._new_report()

    def _new_report(self) -> ReportPlan:
        question = self.question or (DEMO_QUESTION if self.demo else "")
        if not question:
            raise UsageError("the question is missing: pass -q QUESTION")
        if not self.output:
            raise UsageError("the notebook to write is missing: pass -o OUT.ipynb")
        out = Path(self.output).expanduser()
        if out.suffix != ".ipynb":
            raise UsageError(f"the output must be an .ipynb file, not {self.output!r}")
        folder = out.with_name(out.stem + "_files")
        for path in (out, folder, *(export_path(out, fmt) for fmt in self.exports)):
            if path.exists() and not self.force:
                raise UsageError(f"{path} exists; pass --force to overwrite it")
        for raw in self.inputs:
            source = Path(raw).expanduser()
            if not source.exists():
                raise UsageError(f"no such file or folder: {raw}")
            if source.resolve().is_relative_to(folder.resolve()):
                raise UsageError(f"{raw} is inside the run folder {folder}, which the run replaces")
        if folder.exists():
            shutil.rmtree(folder)
        return ReportPlan(question, out, folder, [], self.kernel_name)

    def _continuation(self) -> ReportPlan:
        notebook_path = Path(self.continue_from).expanduser()
        if self.inputs or self.demo:
            raise UsageError("--continue takes no data files: the run folder of the report is used")
        if self.output and Path(self.output).expanduser().resolve() != notebook_path.resolve():
            raise UsageError("--continue appends to the notebook it continues: leave out -o")
        if not self.question:
            raise UsageError("the follow-up question is missing: pass -q QUESTION")
        if not notebook_path.is_file():
            raise UsageError(f"no such notebook: {self.continue_from}")
        try:
            notebook = nbformat.read(notebook_path, as_version=4)
        except Exception as exc:  # not JSON, not a notebook
            raise UsageError(f"{self.continue_from} is not a readable notebook: {exc}") from None
        follows = recorded_conversation(notebook)
        if follows is None:
            raise UsageError(
                f"{self.continue_from} holds no recorded run to continue "
                "(write it with `jupyter deepanalyze report`)"
            )
        folder = notebook_path.with_name(notebook_path.stem + "_files")
        if not folder.is_dir():
            raise UsageError(f"the report's run folder {folder} is missing: its code cannot run again")
        kernel = self.kernel_name
        if "kernel_name" not in self.config.get("ReportApp", {}):
            kernel = notebook.metadata.get("kernelspec", {}).get("name") or kernel
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        return ReportPlan(self.question, notebook_path, folder, names, kernel, notebook, follows)

    async def _report(self, stderr: TextIO) -> int:
        config = gateway_settings(self.settings())
        parse_spec(config.model)  # a bad spec is a usage error, before anything runs
        plan = self._plan()
        # Opened by the run itself: a model that does not answer fails the run, whose
        # notebook then says why, like any other failure.
        model = ModelOpenedOnReady(config)
        progress = Progress(stderr)
        try:
            if plan.follows is None:
                plan.names = stage_inputs(self.inputs, plan.folder)
                if self.demo:
                    if DEMO_FILE in plan.names:
                        raise UsageError(f"an input is already named {DEMO_FILE}")
                    plan.names.append(write_demo_data(plan.folder).name)
            if config.gateway_url:
                recorded = await _report_on_gateway(config, model, plan, progress, stderr)
            else:
                listing = data_listing(plan.folder, plan.names)
                progress.line(f"run folder {plan.folder}/ ({len(listing.files) + listing.more} data files)")
                executor = await KernelExecutor.start(
                    plan.kernel_name, cwd=plan.folder.resolve(), feedback=config.feedback_options()
                )
                try:
                    task = Task(plan.question, listing.files, more_files=listing.more, follows=plan.follows)
                    recorded = await _record(config, model, executor, task, plan, progress, stderr)
                finally:
                    await executor.shutdown()
        finally:
            await model.aclose()
        recorder = recorded.recorder
        for artifact in recorder.outcome.files:
            size = format_bytes(artifact.size)
            progress.line(f"file {plan.folder.name}/{artifact.path} ({size}, {artifact.status})")
        written = recorder.write(plan.out, folder=plan.folder, exports=self.exports, kernel_name=plan.kernel_name)
        progress.line("wrote " + ", ".join(str(p) for p in written))
        reason = recorder.outcome.reason(max_rounds=config.max_rounds)
        if reason is None:
            return EXIT_OK
        print(f"jupyter deepanalyze: {reason}", file=stderr)
        if recorded.terminated:
            return EXIT_TERMINATED
        return EXIT_INTERRUPTED if recorder.outcome.status == "cancelled" else EXIT_FAILED


def gateway_settings(config: DeepAnalyze) -> DeepAnalyze:
    """``config``, its gateway settings checked (a bad URL is a usage error, not a failure)."""
    if config.shared_workdir and not config.gateway_url:
        raise UsageError("--shared-workdir is for kernels on a gateway: pass --gateway-url too")
    try:
        config.gateway_endpoint()
    except GatewayError as exc:
        raise UsageError(f"--gateway-url: {exc}") from None
    return config


async def rebuild_kernel(
    executor: Executor, notebook: NotebookNode, timeout: float | None, progress: Progress
) -> None:
    """Run the notebook's code cells again, in order, so the kernel holds what they made.

    Their outputs are not kept (the notebook keeps those it recorded); a cell that fails
    again (some did the first time) is noted and the next one runs.
    """
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
    progress.line(f"rebuilding the kernel: running the notebook's {len(cells)} code cells again")
    for index, cell in enumerate(cells, start=1):
        result = await executor.execute(cell.source, timeout=timeout)
        if result.status != "ok":
            progress.line(f"         code cell {index} of {len(cells)} ended {result.status}")


async def _record(
    config: DeepAnalyze,
    model: ChatModel,
    executor: Executor,
    task: Task,
    plan: ReportPlan,
    progress: Progress,
    stderr: TextIO,
) -> Recorded:
    if plan.existing is not None:
        await rebuild_kernel(executor, plan.existing, config.execution_timeout, progress)
    agent = Agent.from_config(config, model, executor, file_links=f"{plan.folder.name}/")
    return await record_in_terminal(agent, task, RunRecorder(existing=plan.existing), progress, stderr)


async def _report_on_gateway(
    config: DeepAnalyze, model: ChatModel, plan: ReportPlan, progress: Progress, stderr: TextIO
) -> Recorded:
    """The report's run in a kernel on ``config.gateway_url``: the run folder's files go to
    the kernel's side (shipped, or through ``shared_workdir``) and what the run leaves
    there comes back into the run folder, so the report reads as a local one."""
    inputs: Sequence[Path] = [plan.folder / name for name in plan.names]
    async with KernelPool.from_config(config, 1, kernel_name=plan.kernel_name) as pool:
        async with pool.session(inputs, name=plan.folder.name) as kernel:
            progress.line(f"run folder {kernel.workdir}/ on {config.gateway_url} ({len(kernel.files)} data files)")
            try:
                task = Task(plan.question, kernel.files, follows=plan.follows)
                return await _record(config, model, kernel.executor, task, plan, progress, stderr)
            finally:
                try:
                    await pool.folders.collect(kernel.executor, kernel.workdir, plan.folder)
                except ExecutionFailure as exc:  # the report is written all the same
                    progress.line(f"the run folder's files stay on the kernel's side: {exc}")


ReportApp.aliases = {
    **base_aliases,
    **MODEL_ALIASES,
    **RUN_ALIASES,
    **GATEWAY_ALIASES,
    ("q", "question"): "ReportApp.question",
    ("o", "output"): "ReportApp.output",
    "continue": "ReportApp.continue_from",
    "kernel": "ReportApp.kernel_name",
}
ReportApp.flags = {**base_flags, **RUN_FLAGS, **flags_of(ReportApp, "html", "pdf", "markdown", "force", "demo")}
