"""The REST and websocket API of ARCHITECTURE.md ("Server API"), on Jupyter's own auth.

Owns request parsing and validation, status codes and response shapes. Every handler is
authenticated and authorized (resource ``deepanalyze``: ``read`` for what only looks,
``GET /deepanalyze/runs/{id}`` and its events websocket alike, ``write`` for the rest;
starting a run, approving code and inspecting variables also need ``execute`` on
``kernels``, as they run code in a kernel); XSRF is checked for cookie-authenticated
writes by ``JupyterHandler``; the websocket checks its origin as the server's kernel
websocket does. Errors are one-line JSON messages, never tracebacks. Handlers get the
extension's services at ``initialize`` (``routes(services)``'s route kwargs), so they
never import the extension back.

Must not bypass Jupyter auth, and must not block: long work runs in ``RunManager``'s
background tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..agent import Approval
from ..config import DeepAnalyze
from ..execution import KernelUnresponsive
from ..sanitize import Redactor
from .eventlog import RUN_ID_PATTERN
from .inputs import InputError, data_files
from .kernels import KernelExecutors, UnknownKernel, find_kernel
from .models import ModelChoices, ModelNotAllowed, same_spec
from .runlist import DEFAULT_LIMIT, MAX_LIMIT, UnknownCursor
from .runs import (
    CannotFollowUp,
    KernelHasActiveRun,
    NotWaitingForApproval,
    Run,
    RunManager,
    RunRequest,
    UnknownRun,
)
from .user_models import (
    BadUserModel,
    UserModel,
    UserModelRefused,
    UserModelStore,
    parse_user_model,
    probe_user_model,
)
from .variables import VariablesUnavailable, kernel_variables

AUTH_RESOURCE = "deepanalyze"
CANCEL_WAIT_SECONDS = 5.0
"""POST …/cancel answers once the run has ended (normally well under 2 s), or after this."""

_RUN = rf"(?P<run_id>{RUN_ID_PATTERN})"
_KERNEL = r"(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)"


class ApiError(web.HTTPError):
    """An error answered as ``{"message": ...}`` (kept out of tornado's format strings)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code)
        self.message = message


@dataclass(frozen=True)
class Services:
    """What the handlers use, built once by the extension and passed to each at ``initialize``."""

    config: DeepAnalyze
    runs: RunManager
    models: ModelChoices
    executors: KernelExecutors
    variables_timeout: float
    """Seconds a kernel may take to describe its variables."""
    user_models: UserModelStore
    """Each user's own model (JupyterLab's Model settings)."""
    max_request_bytes: int = 1024 * 1024
    """Largest request body accepted (413 beyond it)."""


class DeepAnalyzeHandlerMixin:
    """What every DeepAnalyze handler shares: the extension's services and an authz check."""

    auth_resource = AUTH_RESOURCE
    services: Services

    def initialize(self, services: Services) -> None:
        self.services = services

    async def require(self, action: str, resource: str) -> None:
        """Authorize one more (action, resource) pair beyond the handler's own."""
        handler: Any = self
        allowed = await ensure_async(handler.authorizer.is_authorized(self, handler.current_user, action, resource))
        if not allowed:
            raise web.HTTPError(403, f"User is not authorized to {action} on resource: {resource}.")

    def user_model(self) -> UserModel | None:
        return self.services.user_models.load()

    def find_run(self, run_id: str) -> Run:
        try:
            return self.services.runs.get(run_id)
        except UnknownRun as exc:
            raise ApiError(404, str(exc)) from None


class DeepAnalyzeAPIHandler(DeepAnalyzeHandlerMixin, APIHandler):
    """JSON in, JSON out."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(error, ApiError):
            self.log.info("DeepAnalyze: %s %s: %s", status_code, self.request.path, error.message)
            self.finish(json.dumps({"message": error.message, "reason": error.reason}))
            return
        super().write_error(status_code, **kwargs)

    def reply(self, body: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def json_object(self) -> dict[str, Any]:
        """The request body: a JSON object in UTF-8, within the size limit, its strings
        cleaned of lone surrogates."""
        raw: bytes = self.request.body or b""
        limit = self.services.max_request_bytes
        if len(raw) > limit:
            raise ApiError(
                413, f"The request is too large ({len(raw)} bytes; at most {limit}): shorten the question."
            )
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except UnicodeDecodeError:
            raise ApiError(400, "The request body is not UTF-8 text.") from None
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return _CLEAN.value(body)


_CLEAN = Redactor()
"""Cleans lone surrogates (no secrets to redact in what a user sends)."""


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string.")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ApiError(400, f"{key!r} must be a list of non-empty strings.")
    return [v.strip() for v in value]


def file_links(root_dir: str, notebook_path: str | None, kernel_cwd: str) -> str:
    """The kernel's working folder as seen from the notebook's folder (``""``: the same), so
    the report's links to the files a run wrote work in JupyterLab and in exports."""
    if not notebook_path:
        return ""
    notebook_dir = os.path.join(root_dir, os.path.dirname(notebook_path.strip().lstrip("/")))
    relative = os.path.relpath(os.path.realpath(kernel_cwd), os.path.realpath(notebook_dir))
    return "" if relative == "." else relative.replace(os.sep, "/") + "/"


class RunsHandler(DeepAnalyzeAPIHandler):
    """``POST /deepanalyze/runs`` starts a run (a follow-up with ``parent_run_id``); ``GET``
    lists runs from their logs, newest first (``?kernel_id=&limit=&before=RUN_ID``), each
    with the run it follows up."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        kernel_id = self.get_argument("kernel_id", None)
        before = self.get_argument("before", None)
        try:
            limit = int(self.get_argument("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
        try:
            runs = await self.services.runs.list_runs(kernel_id, limit=limit, before=before)
        except UnknownCursor as exc:
            raise ApiError(400, str(exc)) from None
        self.reply({"runs": runs})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.require("execute", "kernels")  # a run executes code in the kernel
        body = self.json_object()
        question = _optional_str(body, "question")
        if not question or not question.strip():
            raise ApiError(400, "'question' is required: say what to analyze.")
        notebook_path = _optional_str(body, "notebook_path")
        kernel_id = _optional_str(body, "kernel_id")
        if not notebook_path and not kernel_id:
            raise ApiError(400, "Give 'notebook_path' (a notebook with a running kernel) or 'kernel_id'.")
        files = _str_list(body, "files")
        variables = _str_list(body, "variables")
        bad = [name for name in variables if not name.isidentifier()]
        if bad:
            raise ApiError(400, f"Not a Python variable name: {bad[0]!r}.")
        services = self.services
        approval = _optional_str(body, "approval") or services.config.approval
        if approval not in ("auto", "manual"):
            raise ApiError(400, "'approval' must be 'auto' or 'manual'.")
        parent_run_id = _optional_str(body, "parent_run_id")

        try:
            target = await find_kernel(self.serverapp, notebook_path=notebook_path, kernel_id=kernel_id)
            services.runs.check_idle(target.kernel_id)
            follows = services.runs.follow_up_of(parent_run_id, target.kernel_id) if parent_run_id else None
            requested = _optional_str(body, "model")
            own = self.user_model()
            if own is not None and requested and same_spec(requested, own.url):
                model = own.url
            else:
                model, own = services.models.check(requested), None
            root = self.serverapp.root_dir
            allow_hidden = bool(getattr(self.serverapp.contents_manager, "allow_hidden", False))
            # Off the event loop: a folder may hold very many files (or sit on a slow disk).
            listing = await asyncio.to_thread(data_files, root, target.cwd, files, allow_hidden=allow_hidden)
            infos = []
            if variables:
                report = await kernel_variables(
                    services.executors,
                    target.kernel_id,
                    variables,
                    timeout=services.variables_timeout,
                )
                if report.missing:
                    raise ApiError(400, f"No variable named {report.missing[0]!r} in the kernel.")
                infos = [v.to_variable_info() for v in report.variables]
            run = services.runs.start(
                RunRequest(
                    kernel_id=target.kernel_id,
                    question=question,
                    model=model,
                    files=listing.files,
                    more_files=listing.more,
                    variables=infos,
                    approval=approval,
                    user_model=own,
                    follows=follows,
                    file_links=file_links(root, notebook_path, target.cwd),
                )
            )
        except (UnknownKernel, UnknownRun) as exc:
            raise ApiError(404, str(exc)) from None
        except (KernelHasActiveRun, VariablesUnavailable, CannotFollowUp) as exc:
            raise ApiError(409, str(exc)) from None
        except KernelUnresponsive as exc:
            raise ApiError(409, f"Cannot start a run: {exc}") from None
        except ModelNotAllowed as exc:
            raise ApiError(403, str(exc)) from None
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        self.reply({"run_id": run.run_id, "kernel_id": target.kernel_id, "parent_run_id": parent_run_id}, status=201)


class RunHandler(DeepAnalyzeAPIHandler):
    """``GET /deepanalyze/runs/{id}``: status and every event."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.reply(self.find_run(run_id).snapshot())


class CancelHandler(DeepAnalyzeAPIHandler):
    """``POST /deepanalyze/runs/{id}/cancel``: answers once the run has ended."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        run = self.find_run(run_id)
        run.cancel()
        await run.wait(CANCEL_WAIT_SECONDS)
        self.reply({"run_id": run.run_id, "status": run.status})


class ApproveHandler(DeepAnalyzeAPIHandler):
    """``POST /deepanalyze/runs/{id}/approve`` with ``{cell_id, action, code?}``."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.require("execute", "kernels")  # approving runs (possibly edited) code
        run = self.find_run(run_id)
        body = self.json_object()
        cell_id = _optional_str(body, "cell_id")
        action = _optional_str(body, "action")
        code = _optional_str(body, "code")
        if not cell_id:
            raise ApiError(400, "'cell_id' is required (from the approval_required event).")
        if action not in ("run", "skip"):
            raise ApiError(400, "'action' must be 'run' or 'skip'.")
        try:
            run.answer(cell_id, Approval(action, code))
        except NotWaitingForApproval as exc:
            raise ApiError(409, str(exc)) from None
        self.reply({"run_id": run.run_id, "cell_id": cell_id, "action": action})


class ModelsHandler(DeepAnalyzeAPIHandler):
    """``GET /deepanalyze/models``: the allowed models and whether each answers."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        models = self.services.models
        choices = await models.describe(self.user_model())
        self.reply({
            "default": models.default,
            "models": [c.to_json() for c in choices],
            "user_models": self.services.config.allow_user_models,
        })


class UserModelBase(DeepAnalyzeAPIHandler):
    """This user's own model (JupyterLab's Model settings); answers never hold the API key."""

    def _store(self) -> Any:
        store = self.services.user_models
        try:
            store.check_allowed()
        except UserModelRefused as exc:
            raise ApiError(403, str(exc)) from None
        return store

    def _settings(self) -> UserModel:
        saved = self.user_model()
        try:
            model = parse_user_model(self.json_object(), keep_key=saved.api_key if saved else "")
            self._store().check_allowed(model.url)
        except BadUserModel as exc:
            raise ApiError(400, str(exc)) from None
        except UserModelRefused as exc:
            raise ApiError(403, str(exc)) from None
        return model


class UserModelHandler(UserModelBase):
    """``GET``, ``PUT``, ``DELETE /deepanalyze/user-model``: read, save or forget it."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        saved = self._store().load()
        self.reply({"model": saved.public() if saved else None})

    @web.authenticated
    @authorized
    async def put(self) -> None:
        model = self._settings()
        self._store().save(model)
        self.reply({"model": model.public()})

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        self._store().delete()
        self.reply({"model": None})


class UserModelTestHandler(UserModelBase):
    """``POST /deepanalyze/user-model/test``: try settings (``GET {url}/models``), unsaved."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        model = self._settings()
        self.reply(await probe_user_model(model, self.services.config))


class VariablesHandler(DeepAnalyzeAPIHandler):
    """``GET /deepanalyze/kernels/{kernel_id}/variables``: DataFrames, Series, arrays."""

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        await self.require("execute", "kernels")  # the summary is a (silent) execution
        services = self.services
        try:
            report = await kernel_variables(services.executors, kernel_id, timeout=services.variables_timeout)
        except UnknownKernel as exc:
            raise ApiError(404, str(exc)) from None
        except VariablesUnavailable as exc:
            raise ApiError(409, str(exc)) from None
        self.reply({"variables": [v.to_json() for v in report.variables], "truncated": report.truncated})


class RunEventsWebsocket(DeepAnalyzeHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``WS /deepanalyze/runs/{id}/events?since=N``: replay from ``seq`` N, then live events.

    One JSON event per message; the server closes the socket after ``run_finished``.
    Authenticated and origin-checked exactly like the server's kernel websocket.
    """

    run: Run
    since: int = 0
    _sender: asyncio.Task[None] | None = None

    def set_default_headers(self) -> None:
        """No page headers (CSP and the like) on a websocket upgrade."""

    @ws_authenticated
    async def get(self, run_id: str) -> None:
        await self.require("read", AUTH_RESOURCE)  # as GET /deepanalyze/runs/{id}: the same events
        self.run = self.find_run(run_id)
        try:
            self.since = max(0, int(self.get_argument("since", "0")))
        except ValueError:
            raise ApiError(400, "'since' must be an event number (an integer).") from None
        await super().get(run_id)

    def open(self, run_id: str) -> None:  # type: ignore[override]
        super().open()
        self._sender = asyncio.ensure_future(self._send_events())

    async def _send_events(self) -> None:
        try:
            async for event in self.run.follow(self.since):
                await self.write_message(json.dumps(event))
        except WebSocketClosedError:
            return
        self.close(1000, "run finished")

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; commands go through the REST endpoints."""

    def on_close(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()


def routes(services: Services) -> list[tuple[str, type, dict[str, Any]]]:
    """URL patterns (relative to the server's base URL), their handlers and what they get."""
    from .report_exports import ExportHandler  # it builds on the handlers above
    handlers: list[tuple[str, type]] = [
        (r"/deepanalyze/runs", RunsHandler),
        (rf"/deepanalyze/runs/{_RUN}", RunHandler),
        (rf"/deepanalyze/runs/{_RUN}/events", RunEventsWebsocket),
        (rf"/deepanalyze/runs/{_RUN}/cancel", CancelHandler),
        (rf"/deepanalyze/runs/{_RUN}/approve", ApproveHandler),
        (rf"/deepanalyze/runs/{_RUN}/export", ExportHandler),
        (r"/deepanalyze/models", ModelsHandler),
        (r"/deepanalyze/user-model", UserModelHandler),
        (r"/deepanalyze/user-model/test", UserModelTestHandler),
        (rf"/deepanalyze/kernels/{_KERNEL}/variables", VariablesHandler),
    ]
    return [(pattern, handler, {"services": services}) for pattern, handler in handlers]
