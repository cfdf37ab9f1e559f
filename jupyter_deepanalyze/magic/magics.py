"""``%analyze`` and ``%%analyze``, and loading them: ``%load_ext jupyter_deepanalyze``.

Owns ``AnalyzeMagics`` (the magic's docstring is its help; the session's last result,
which ``%analyze --continue`` continues) and ``load_ipython_extension``, which also
registers a ``DeepAnalyze`` configurable for ``%config DeepAnalyze.<name> = …``.

Must not hold run logic (``run.run_analysis``) or line parsing (``line``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from ..config import DeepAnalyze, take_secrets_from_environment
from .line import MagicArguments, parse_magic_line
from .result import AnalysisResult
from .run import run_analysis


@magics_class
class AnalyzeMagics(Magics):
    """``%analyze`` / ``%%analyze``."""

    def __init__(self, shell: Any, settings: DeepAnalyze) -> None:
        super().__init__(shell)
        self.settings = settings
        self.last: AnalysisResult | None = None
        """The latest run of this session (``%analyze --continue`` continues it)."""

    @no_var_expand
    @line_cell_magic
    def analyze(self, line: str, cell: str | None = None) -> AnalysisResult | None:
        """Analyze data with DeepAnalyze, in this namespace, live.

        %analyze [VARIABLE ...] "QUESTION" [--model SPEC] [--max-rounds N] [--approve] [--continue]
        %%analyze [VARIABLE ...] [options]   (the cell body is the question)

        The model's code runs here: what it creates stays defined. With no variable
        named, the question is about the data files in the working directory. Ctrl-C
        (Stop) ends the run. Returns an AnalysisResult: .report, .events, .status,
        .files, .to_notebook(), .ask("a follow-up question"). --continue continues the
        last run of this session (as its result's .ask would). Model: --model, else the
        DeepAnalyze config (%config DeepAnalyze.model = "http://host:8000/v1"), else
        $DEEPANALYZE_MODEL.
        """
        arguments = parse_magic_line(line, cell)
        if arguments is None:
            return None
        follows = None
        if arguments.follow_up:
            if self.last is None:
                raise UsageError("%analyze --continue: no earlier run in this session to continue")
            follows = self.last
            if not arguments.variables:  # as .ask(): the variables of the run it follows
                arguments = dataclasses.replace(arguments, variables=follows.variables)
        return self._run(arguments, follows)

    def _run(self, arguments: MagicArguments, follows: AnalysisResult | None = None) -> AnalysisResult | None:
        # A copy per run: --max-rounds must not stick, and an unset model still
        # follows $DEEPANALYZE_MODEL as it is now.
        settings = DeepAnalyze(config=self.settings.config)
        result = run_analysis(self.shell, settings, arguments, follows=follows, ask=self._ask)
        if result is not None:
            self.last = result
        return result

    def _ask(self, parent: AnalysisResult, arguments: MagicArguments) -> AnalysisResult | None:
        """What ``AnalysisResult.ask`` calls: a follow-up of ``parent``."""
        return self._run(arguments, parent)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_deepanalyze``: register the magics and the ``DeepAnalyze`` config.

    ``$DEEPANALYZE_API_KEY`` moves from the shell's environment into its config: the
    model's code (run in this very process) finds no key in ``os.environ``.
    """
    take_secrets_from_environment(shell.config)
    settings = DeepAnalyze(parent=shell)
    shell.configurables = [c for c in shell.configurables if not isinstance(c, DeepAnalyze)] + [settings]
    shell.register_magics(AnalyzeMagics(shell, settings))


def unload_ipython_extension(shell: Any) -> None:
    shell.configurables = [c for c in shell.configurables if not isinstance(c, DeepAnalyze)]
    shell.magics_manager.magics["line"].pop("analyze", None)
    shell.magics_manager.magics["cell"].pop("analyze", None)
