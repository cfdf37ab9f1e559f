"""The ``%analyze`` magic: the agent on the user's own namespace, shown in the cell.

``line`` reads the magic's line, ``run`` runs the agent (its threads, the
``AnalysisResult`` of ``result``), ``render`` turns a run's events into HTML, text and
the run's MIME bundle, ``views`` shows them live, and ``magics`` registers
``%analyze``/``%%analyze`` (``%load_ext jupyter_deepanalyze`` reaches it through the
package root).
"""

from .magics import AnalyzeMagics, load_ipython_extension, unload_ipython_extension
from .result import AnalysisResult

__all__ = ["AnalysisResult", "AnalyzeMagics", "load_ipython_extension", "unload_ipython_extension"]
