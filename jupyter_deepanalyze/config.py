"""The ``DeepAnalyze`` configurable: every user-facing knob, in one place.

Owns the traitlets that the CLI, the server extension, the magic and the eval harness
read. Environment variables ``DEEPANALYZE_MODEL`` and ``DEEPANALYZE_API_KEY`` supply
defaults; config files and command-line flags override them. Also owns moving secrets
out of the environment into the config at each front door's start-up
(``take_secrets_from_environment``), so that no kernel started afterwards inherits them,
and the names of the variables no kernel is given (``SECRET_ENVIRONMENT``).

Must not import Jupyter server code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    HasTraits,
    Int,
    List,
    TraitError,
    TraitType,
    Unicode,
    default,
    validate,
)
from traitlets.config import Config, Configurable

from .feedback import FeedbackOptions

if TYPE_CHECKING:  # the execution package imports this module
    from .execution.gateway import GatewayEndpoint

MODEL_ENV = "DEEPANALYZE_MODEL"
API_KEY_ENV = "DEEPANALYZE_API_KEY"
MIN_OUTPUT_LIMIT = 200
"""A cap below this would leave the model too little to read (0 or None means no cap)."""
GATEWAY_TOKEN_ENV = "JUPYTER_GATEWAY_AUTH_TOKEN"
"""The gateway token's variable: the one a Jupyter server started with --gateway-url reads."""
SECRET_SETTINGS = frozenset({"api_key", "api_keys", "gateway_token"})
"""Settings never shown: not in help with values, not by --show-config."""
SECRET_ENVIRONMENT = (API_KEY_ENV, GATEWAY_TOKEN_ENV)
"""Variables no kernel this project starts is given (they stay in the process that needs them)."""


def take_secrets_from_environment(config: Config) -> None:
    """Move ``$DEEPANALYZE_API_KEY`` out of ``os.environ`` into ``config`` (as
    ``DeepAnalyze.api_key``, unless a config file or the command line set one).

    Every front door calls this at start-up (the server extension when it loads, each
    ``jupyter deepanalyze`` command, ``%load_ext``), so kernels started afterwards (a
    Jupyter server's kernel manager hands its own environment to every kernel) never see
    the key. The gateway token stays in the environment: a Jupyter server started with
    ``--gateway-url`` reads it from there itself, and its kernels run on the gateway.
    """
    key = os.environ.pop(API_KEY_ENV, None)
    if key and "api_key" not in config.DeepAnalyze:
        config.DeepAnalyze.api_key = key


class DeepAnalyze(Configurable):
    """Settings of the DeepAnalyze agent."""

    model = Unicode(
        help=(
            "Model spec: an OpenAI-compatible base URL (http://host:port/v1), "
            "'vllm:ID_OR_PATH', 'transformers:ID_OR_PATH', 'tiny' or 'auto'. "
            f"Defaults to ${MODEL_ENV}, else 'auto'."
        ),
    ).tag(config=True)

    @default("model")
    def _default_model(self) -> str:
        return os.environ.get(MODEL_ENV, "").strip() or "auto"

    model_name = Unicode(
        "",
        help="Served model name to request. Empty: ask the server's /v1/models.",
    ).tag(config=True)

    allowed_models = List(
        Unicode(),
        default_value=[],
        help="Model specs users may pick (server extension). Empty: only the configured model.",
    ).tag(config=True)

    allow_user_models = Bool(
        True,
        help=(
            "Server extension: users may add their own OpenAI-compatible model (URL and API key, "
            "kept server-side in an owner-only file) from JupyterLab's Model settings. When "
            "allowed_models is set, only those URLs may be added."
        ),
    ).tag(config=True)

    dialect = CaselessStrEnum(
        ["auto", "native", "generic"],
        default_value="auto",
        help=(
            "Prompt dialect: 'native' for DeepAnalyze models (no system prompt, 'execute' "
            "role), 'generic' for other chat models, 'auto' chooses by the model's name."
        ),
    ).tag(config=True)

    api_key = Unicode(
        help=(
            f"API key of the default model (DeepAnalyze.model), sent to it as a Bearer token and to no "
            f"other server. Defaults to ${API_KEY_ENV}; never logged, never in a kernel's environment."
        ),
    ).tag(config=True)

    api_keys = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        default_value={},
        help=(
            "API keys per model spec, {spec: key} (e.g. {'https://api.example.com/v1': 'sk-…'}): each "
            "is sent only to its own model's server. The default model's key may also be api_key."
        ),
    ).tag(config=True)

    @default("api_key")
    def _default_api_key(self) -> str:
        return os.environ.get(API_KEY_ENV, "")

    @classmethod
    def class_get_trait_help(
        cls, trait: TraitType[Any, Any], inst: HasTraits | None = None, helptext: str | None = None
    ) -> str:
        # Help with current values (IPython's `%config DeepAnalyze`) never shows a secret.
        if trait.name in SECRET_SETTINGS:
            inst = None
        return super().class_get_trait_help(trait, inst, helptext)

    max_rounds = Int(30, min=1, help="Maximum number of model turns in one run.").tag(
        config=True
    )

    execution_timeout = Float(
        600.0,
        min=0.1,
        help="Seconds one code block may run before the kernel is interrupted.",
    ).tag(config=True)

    output_limit = Int(
        16000,
        min=0,
        allow_none=True,
        help=(
            "Characters of execution output sent back to the model (head and tail kept); "
            "0 (or None) sends everything, as the reference does."
        ),
    ).tag(config=True)

    @validate("output_limit")
    def _check_output_limit(self, proposal: Any) -> int | None:
        value = proposal["value"]
        if value is not None and 0 < value < MIN_OUTPUT_LIMIT:
            raise TraitError(
                f"The 'output_limit' trait of a DeepAnalyze instance must be 0 (no cap) or at least "
                f"{MIN_OUTPUT_LIMIT}, but a value of {value} was specified."
            )
        return value

    show_results = Bool(
        True,
        help=(
            "Tell the model the value of a block's trailing expression and the text of what it "
            "displays (figures as a one-line placeholder). False reproduces the reference, "
            "which shows only what was printed."
        ),
    ).tag(config=True)

    parity = Bool(
        False,
        help=(
            "Exact parity with the reference loop (deepanalyze.py's execute_code): each block "
            "runs with fresh globals and the model is told exactly what the reference would tell "
            "it (stdout then stderr, no trailing value, no figure placeholder, no cap, its "
            "[Error]: form). For benchmarks and reproducing published numbers; overrides "
            "keep_output_before_error, show_results and output_limit."
        ),
    ).tag(config=True)

    approval = CaselessStrEnum(
        ["auto", "manual"],
        default_value="auto",
        help="'manual': every code block waits for the user to run, edit or skip it.",
    ).tag(config=True)

    track_files = Bool(
        True,
        help=(
            "Report the files each code block creates or modifies in the run's working folder "
            "(an 'artifacts' event; the report ends with a Files list linking them). The kernel "
            "lists its folder itself, before and after each block (hidden files, caches and "
            "notebooks left out; at most 1000 files, 3 levels deep)."
        ),
    ).tag(config=True)

    temperature = Float(0.5, min=0.0, max=2.0, help="Sampling temperature.").tag(config=True)

    max_tokens = Int(
        32768,
        min=1,
        help="Most tokens per model turn (bounded by the server's context window).",
    ).tag(config=True)

    request_timeout = Float(
        600.0,
        min=1.0,
        help="Seconds to wait for the model server between streamed chunks.",
    ).tag(config=True)

    device = Unicode(
        "",
        help="Device for in-process models ('cpu', 'cuda', 'cuda:1'); empty: CUDA when available.",
    ).tag(config=True)

    vllm_mode = CaselessStrEnum(
        ["serve", "engine"],
        default_value="serve",
        help=(
            "For 'vllm:' specs: 'serve' runs a managed `vllm serve` on 127.0.0.1; 'engine' runs "
            "vLLM's async engine in this process (batch evaluation on a GPU machine)."
        ),
    ).tag(config=True)

    vllm_executable = Unicode("vllm", help="The vLLM command for managed servers.").tag(config=True)

    vllm_args = List(
        Unicode(),
        default_value=[],
        help="Extra arguments for `vllm serve`, e.g. ['--max-model-len', '32768'].",
    ).tag(config=True)

    keep_output_before_error = Bool(
        True,
        help=(
            "Send what a failing block printed before the [Error]: line. "
            "False reproduces the reference exactly (it drops it)."
        ),
    ).tag(config=True)

    gateway_url = Unicode(
        "",
        help=(
            "A Jupyter kernel gateway (http://host:8888) on which `jupyter deepanalyze eval` and "
            "`report` start their kernels; empty: this machine. (A Jupyter server runs its "
            "notebooks' kernels on a gateway with its own --gateway-url.)"
        ),
    ).tag(config=True)

    gateway_token = Unicode(
        help=f"The gateway's auth token. Defaults to ${GATEWAY_TOKEN_ENV}; never logged.",
    ).tag(config=True)

    @default("gateway_token")
    def _default_gateway_token(self) -> str:
        return os.environ.get(GATEWAY_TOKEN_ENV, "")

    shared_workdir = Unicode(
        "",
        help=(
            "With a gateway: a folder the gateway's kernels see at the same path (a shared "
            "filesystem); task folders are made there. Empty: each task's folder is made on "
            "the kernel's side and its files are shipped through the kernel."
        ),
    ).tag(config=True)

    max_shipped_mb = Float(
        512.0,
        min=0.0,
        help="Largest total size (MB) of one task's files shipped through a gateway kernel.",
    ).tag(config=True)

    def gateway_endpoint(self) -> GatewayEndpoint | None:
        """The gateway of ``gateway_url`` (with ``gateway_token``), or None (this machine)."""
        if not self.gateway_url:
            return None
        from .execution.gateway import GatewayEndpoint

        return GatewayEndpoint(self.gateway_url, token=self.gateway_token)

    def secrets(self) -> tuple[str, ...]:
        """Every secret configured here (keys, the gateway token): redacted wherever it shows."""
        return tuple(s for s in (self.api_key, *self.api_keys.values(), self.gateway_token) if s)

    def feedback_options(self) -> FeedbackOptions:
        """What the model is told of executions, as these settings say: the one place
        ``FeedbackOptions`` are built from settings (every front door and executor)."""
        if self.parity:
            return FeedbackOptions.reference()
        return FeedbackOptions(
            keep_output_before_error=self.keep_output_before_error,
            show_results=self.show_results,
            limit=self.output_limit or None,
        )


def setting_default(name: str) -> Any:
    """The default of the ``DeepAnalyze`` setting ``name``, for settings mirrored outside
    the configurable (training's ``EnvConfig``): defaults live here only."""
    return DeepAnalyze.class_traits()[name].default_value


def default_feedback_options() -> FeedbackOptions:
    """``FeedbackOptions`` of the default settings (an executor given none uses these)."""
    return FeedbackOptions(
        keep_output_before_error=setting_default("keep_output_before_error"),
        show_results=setting_default("show_results"),
        limit=setting_default("output_limit") or None,
    )
