"""The Jupyter server extension: the agent on a notebook's live kernel.

``extension`` (the ``ExtensionApp``), ``runs`` (``RunManager``: one active run per
kernel, replayable event logs, cancel, approvals), ``kernels`` (one executor per server
kernel), ``variables`` (kernel variable summaries), ``inputs`` (request files confined to
the server root), ``models`` (which models a user may pick), ``eventlog`` (JSONL logs)
and ``handlers`` (the REST and websocket API of ARCHITECTURE.md, "Server API").

Must not bypass Jupyter auth: every handler is authenticated and authorized.
"""
