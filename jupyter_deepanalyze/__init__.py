"""jupyter-deepanalyze: the DeepAnalyze agent on Jupyter kernels.

The core (protocol, events, agent, execution, llm, notebook) needs no Jupyter server;
front doors (CLI, server extension, JupyterLab extension, magic) are built on it.
``%load_ext jupyter_deepanalyze`` loads the ``%analyze`` magics (the ``magic`` package).
"""

from typing import Any

from ._version import __version__


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "jupyter-deepanalyze"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (``/deepanalyze/...`` API); imported only by the server."""
    from .server.extension import DeepAnalyzeExtension

    return [{"module": "jupyter_deepanalyze.server.extension", "app": DeepAnalyzeExtension}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_deepanalyze``: register ``%analyze`` and ``%%analyze``."""
    from .magic import load_ipython_extension as load  # IPython only when asked for

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magic import unload_ipython_extension as unload

    unload(ipython)


__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]
