"""jupyter-deepanalyze: the DeepAnalyze agent on Jupyter kernels.

The core (protocol, events, agent, execution, llm, notebook) needs no Jupyter server;
front doors (CLI, server extension, JupyterLab extension, magic) are built on it.
"""

from typing import Any

from ._version import __version__


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "jupyter-deepanalyze"}]


__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (``/deepanalyze/...`` API); imported only by the server."""
    from .server.extension import DeepAnalyzeExtension

    return [{"module": "jupyter_deepanalyze.server.extension", "app": DeepAnalyzeExtension}]
