"""The evaluation harness and the harness's performance bench.

``benchmarks`` loads benchmark tasks (InfiAgent-DABench, a generic table-QA format),
``scoring`` holds the official scorers and metrics, ``runner`` runs tasks concurrently on
a warm kernel pool and writes trajectories, notebooks and ``summary.py``'s summary and
chart; ``bench`` measures the harness, its model being ``scripted_server`` (an
OpenAI-compatible server replaying the bench's scripted turns, also the tests' model).

Front doors: ``jupyter deepanalyze eval`` and ``jupyter deepanalyze bench``.
"""

from .benchmarks import BENCHMARKS, Benchmark, BenchmarkError, BenchTask, DABench, TableQA, open_benchmark
from .scoring import Metrics, Score, SubAnswer, score_dabench, score_table_qa

__all__ = [
    "BENCHMARKS",
    "BenchTask",
    "Benchmark",
    "BenchmarkError",
    "DABench",
    "Metrics",
    "Score",
    "SubAnswer",
    "TableQA",
    "open_benchmark",
    "score_dabench",
    "score_table_qa",
]
