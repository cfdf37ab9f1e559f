"""What every ``jupyter deepanalyze`` command shares: one ``JupyterApp`` base.

Owns ``DeepAnalyzeCommand``: the config file (``jupyter_deepanalyze_config.py`` or
``.json`` in the Jupyter config path, whatever the subcommand), the ``DeepAnalyze``
settings read from it and the command line (which wins), and bad input — an unknown
option, a malformed command line, a bad value in either place — as one ``UsageError``
line naming the option that set it, never traitlets' exit or argparse's usage dump.
Also the exit codes.

Must not know what any command does (``cli``).
"""

from __future__ import annotations

import re
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Bool, Enum, Float, Int, TraitError
from traitlets.config import Configurable
from traitlets.config.loader import KVArgParseConfigLoader

from ._version import __version__
from .config import SECRET_SETTINGS, DeepAnalyze, take_secrets_from_environment

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
CONFIG_FILE_NAME = "jupyter_deepanalyze_config"

# Options several commands share, each an alias or a flag of a ``DeepAnalyze`` setting.
MODEL_ALIASES: dict[str, str] = {"model": "DeepAnalyze.model", "model-name": "DeepAnalyze.model_name"}
RUN_ALIASES: dict[str, str] = {
    "max-rounds": "DeepAnalyze.max_rounds",
    "max-tokens": "DeepAnalyze.max_tokens",
    "temperature": "DeepAnalyze.temperature",
    "timeout": "DeepAnalyze.execution_timeout",
}
RUN_FLAGS: dict[str, Any] = {
    "parity": (
        {"DeepAnalyze": {"parity": True}},
        "Tell the model exactly what the reference loop would (DeepAnalyze.parity).",
    )
}
GATEWAY_ALIASES: dict[str, str] = {
    "gateway-url": "DeepAnalyze.gateway_url",
    "gateway-token": "DeepAnalyze.gateway_token",
    "shared-workdir": "DeepAnalyze.shared_workdir",
}


class UsageError(Exception):
    """Bad arguments or settings: reported as one line, exit code 2."""


# ---------------------------------------------------------------- reading options


class _OptionParser(KVArgParseConfigLoader.parser_class):  # type: ignore[misc,name-defined]
    """argparse, reporting a malformed command line as one ``UsageError`` line."""

    names: dict[str, str] = {}  # "--Class.trait" (what aliases become) -> the alias typed

    def error(self, message: str) -> Any:
        missing = re.fullmatch(r"argument (\S+): expected one argument", message)
        if missing is None:
            raise UsageError(message)
        option = missing.group(1)
        if option in self.names or "." in option:
            raise UsageError(f"{self.names.get(option, option)} needs a value")
        raise UsageError(f"unknown option {option} (--help lists the options)")


class _OptionLoader(KVArgParseConfigLoader):
    parser_class = _OptionParser

    def _create_parser(self) -> None:
        super()._create_parser()
        self.parser.names = {
            "--" + target: "/".join(("-" if len(k) == 1 else "--") + k for k in _keys(key))
            for key, target in self.aliases.items()
        }

    def _handle_unrecognized_alias(self, arg: str) -> None:
        raise UsageError(f"unknown option --{arg} (--help lists the options)")


def _problem(trait: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for ``trait``, in words; None when it cannot tell."""
    if isinstance(trait, (Int, Float)):
        kind, convert = ("a whole number", int) if isinstance(trait, Int) else ("a number", float)
        try:
            number = convert(str(value))
        except ValueError:
            return f": expected {kind}, not {str(value)!r}"
        if trait.min is not None and number < trait.min:
            return f" must be at least {trait.min}"
        if trait.max is not None and number > trait.max:
            return f" must be at most {trait.max}"
    if isinstance(trait, Enum) and trait.values:
        return f": expected one of {', '.join(map(str, trait.values))}, not {str(value)!r}"
    return None


class DeepAnalyzeCommand(JupyterApp):
    """What every ``jupyter deepanalyze`` command shares: settings, config file, one-line errors."""

    version = __version__
    classes = [DeepAnalyze]
    raise_config_file_errors = Bool(True, help="A config file that cannot be read stops the command.")

    def _config_file_name_default(self) -> str:
        return CONFIG_FILE_NAME

    def migrate_config(self) -> None:
        """Nothing to migrate: these commands never read IPython 3's config."""

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        # A config file that cannot be read is an error to fix, not a warning to scroll past.
        try:
            super().load_config_file(suppress_errors=False)
        except UsageError:
            raise
        except Exception as exc:  # the file's own error (a NameError, a syntax error…)
            raise UsageError(f"cannot read the config file {self.config_file_name}: {exc!r}") from None

    def _create_loader(self, argv: Any, aliases: Any, flags: Any, classes: Any) -> KVArgParseConfigLoader:
        return _OptionLoader(argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands)

    def _load_config(self, cfg: Any, section_names: Any = None, traits: Any = None) -> None:
        # A bad value of this command's own options: one line, not traitlets' exit(1).
        try:
            super()._load_config(cfg, section_names=section_names, traits=traits)
        except TraitError as exc:
            raise UsageError(self.explain(type(self), exc, cfg)) from None

    def explain(self, cls: type[Configurable], error: TraitError, config: Any = None) -> str:
        """A bad value of ``cls``'s settings (from ``config``, else the app's) as one line
        naming the option or config file that set it."""
        match = re.search(r"'(\w+)' trait", str(error))
        trait = cls.class_traits(config=True).get(match.group(1)) if match else None
        if trait is None:
            return str(error)
        target = f"{cls.__name__}.{trait.name}"
        if trait.name in self.cli_config.get(cls.__name__, {}):
            names = [k for key, t in self.aliases.items() if t == target for k in _keys(key)]
            option = "--" + max(names, key=len) if names else f"--{target}"
            value = self.cli_config[cls.__name__][trait.name]
        else:
            files = ", ".join(self.loaded_config_files) or "the config"
            option = f"c.{target} in {files}"
            value = (self.config if config is None else config).get(cls.__name__, {}).get(trait.name)
        problem = _problem(trait, value)
        return f"{option}{problem}" if problem else f"{option}: {error}"

    def settings(self) -> DeepAnalyze:
        """The ``DeepAnalyze`` settings: config files, then the command line (the API key
        taken out of the environment first: no kernel this command starts inherits it)."""
        take_secrets_from_environment(self.config)
        try:
            return DeepAnalyze(parent=self)
        except TraitError as exc:
            raise UsageError(self.explain(DeepAnalyze, exc)) from None

    def start_show_config(self) -> None:
        """``--show-config``, with secrets (API keys, tokens) shown as ``'<hidden>'``."""
        section = self.config["DeepAnalyze"] if "DeepAnalyze" in self.config else {}
        secrets = {name: section[name] for name in SECRET_SETTINGS if name in section}
        section.update(dict.fromkeys(secrets, "<hidden>"))
        try:
            super().start_show_config()
        finally:
            section.update(secrets)

    def no_arguments(self) -> None:
        if self.extra_args:
            raise UsageError(f"unexpected argument {self.extra_args[0]!r} (--help lists the options)")

    def run(self) -> int:
        """Run the command; returns the exit code."""
        raise NotImplementedError

    def start(self) -> None:
        code = self.run()
        if code:
            self.exit(code)


def _keys(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else (key,)


def flags_of(cls: type[DeepAnalyzeCommand], *names: str) -> dict[str, Any]:
    """Flags that set ``cls``'s Bool traits, helped by the traits' own help."""
    traits = cls.class_traits()
    return {name.replace("_", "-"): ({cls.__name__: {name: True}}, traits[name].help) for name in names}
