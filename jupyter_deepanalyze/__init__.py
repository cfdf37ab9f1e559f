"""jupyter-deepanalyze: the DeepAnalyze agent on Jupyter kernels.

The core (protocol, events, agent, execution, llm, notebook) needs no Jupyter server;
front doors (CLI, server extension, JupyterLab extension, magic) are built on it.
"""

from ._version import __version__

__all__ = ["__version__"]
