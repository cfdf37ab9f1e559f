"""``DeepAnalyzeExtension``: the Jupyter server extension application.

Owns reading the ``DeepAnalyze`` configuration (config files, command line,
``DEEPANALYZE_MODEL``; ``DEEPANALYZE_API_KEY`` taken out of the server's environment as
the extension loads, so no kernel the server starts inherits it), building the services
the handlers share (kernel executors, run manager, model choices), registering the
handlers, following the server's kernel events, and stopping cleanly (active runs
cancelled, logs closed, clients closed).

Must not open ports or start anything that listens: it lives inside the Jupyter server.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Int, Unicode, default

from .._version import __version__
from ..config import DeepAnalyze, take_secrets_from_environment
from ..llm.registry import ModelRegistry
from .handlers import Services, routes
from .kernels import KERNEL_ACTIONS_SCHEMA, KernelExecutors
from .models import ModelChoices
from .runs import RunManager
from .user_models import UserModelStore


class DeepAnalyzeExtension(ExtensionApp):
    """The DeepAnalyze agent on the server's kernels (``/deepanalyze/...`` API)."""

    name = "jupyter_deepanalyze"
    description = "DeepAnalyze: an autonomous data-science agent running in your notebook's kernel."
    version = __version__
    load_other_extensions = True
    classes = [*ExtensionApp.classes, DeepAnalyze]

    runs_dir = Unicode(
        help="Folder of the runs' event logs (one JSONL file per run). "
        "Default: {jupyter_data_dir}/deepanalyze/runs.",
    ).tag(config=True)

    @default("runs_dir")
    def _default_runs_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "deepanalyze" / "runs")

    user_models_dir = Unicode(
        help="Folder of the user's own model settings (JupyterLab's Model settings; an owner-only "
        "file). Default: {jupyter_data_dir}/deepanalyze/user-models.",
    ).tag(config=True)

    @default("user_models_dir")
    def _default_user_models_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "deepanalyze" / "user-models")

    variables_timeout = Float(
        5.0,
        min=0.1,
        help="Seconds to wait for a kernel to describe its variables (a busy kernel answers late).",
    ).tag(config=True)

    max_request_bytes = Int(
        1024 * 1024,
        min=1024,
        help="Largest request body (a run's question and settings) accepted, in bytes; larger ones get 413.",
    ).tag(config=True)

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        # Before any kernel starts: the server's kernel manager gives kernels its environment.
        take_secrets_from_environment(self.config)
        self.agent_config = DeepAnalyze(parent=self)
        config = self.agent_config
        self.executors = KernelExecutors(
            self.serverapp.kernel_manager,
            feedback=config.feedback_options(),
            attach_timeout=config.execution_timeout,
        )
        self.model_registry = ModelRegistry(config)
        self.runs = RunManager(config, self.executors, Path(self.runs_dir), self.model_registry)
        self.models = ModelChoices(config, self.model_registry)
        self.user_models = UserModelStore(Path(self.user_models_dir), config)
        assert self.serverapp.event_logger is not None
        self.serverapp.event_logger.add_listener(
            schema_id=KERNEL_ACTIONS_SCHEMA, listener=self.executors.on_kernel_action
        )
        self.log.info("DeepAnalyze %s: run logs in %s", __version__, self.runs_dir)

    def initialize_handlers(self) -> None:
        services = Services(
            self.agent_config,
            self.runs,
            self.models,
            self.executors,
            self.variables_timeout,
            self.user_models,
            self.max_request_bytes,
        )
        self.handlers.extend(routes(services))

    async def stop_extension(self) -> None:
        """Cancel active runs (each logs ``run_finished{cancelled}``), then close our clients."""
        assert self.serverapp is not None
        await self.runs.shutdown()
        await self.executors.close()
        await self.model_registry.aclose()  # stops a managed vLLM
        assert self.serverapp.event_logger is not None
        self.serverapp.event_logger.remove_listener(
            schema_id=KERNEL_ACTIONS_SCHEMA, listener=self.executors.on_kernel_action
        )
