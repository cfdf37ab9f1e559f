"""jupyter-deepanalyze: an autonomous data-science agent for Jupyter."""


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "jupyter-deepanalyze"}]
