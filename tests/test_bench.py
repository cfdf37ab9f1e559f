"""`jupyter deepanalyze bench` runs with no model and prints its medians and ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jupyter_deepanalyze.eval.scripted_server import bench_policy

JUPYTER = str(Path(sys.executable).parent / "jupyter")


def test_bench_prints_overhead_ratios_throughput_memory_and_the_gateway_row(tmp_path: Path) -> None:
    numbers = tmp_path / "bench.json"
    done = subprocess.run(
        [JUPYTER, "deepanalyze", "bench", "--repeat", "2", "--runs", "1", "--tasks", "2", "--json", str(numbers)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "scripted policy: jupyter_deepanalyze.eval.scripted_server" in out and "not a model" in out
    section = out[out.index("(1) per-execution overhead") : out.index("(2)")]
    assert "    pass\n" in section and "    pandas groupby 10k\n" in section
    for method in ("fresh Python process per block", "KernelExecutor, warm kernel", "raw jupyter_client round trip"):
        assert section.count(method) == 2
    assert section.count("ratios: fresh/executor ") == 2 and section.count("x; executor/raw ") == 2
    assert "(2) agent loop per round" in out and "% of the round)" in out
    assert "concurrency 2:" in out and "x concurrency 1" in out
    assert "RSS" in out and "USS" in out
    # (5): kernels on a local Kernel Gateway against local kernels, same tasks, same concurrency.
    assert "(5) kernels on a gateway (http://127.0.0.1:" in out and "websocket path " in out

    data = json.loads(numbers.read_text())
    for row in data["execution_overhead"]:
        assert row["samples"] == 2
        assert row["fresh_over_executor"] > 0 and row["executor_over_raw"] > 0
    loop = data["agent_loop"]
    assert loop["rounds_per_run"] == 4
    assert abs(loop["model_ms"] + loop["code_ms"] + loop["overhead_ms"] - loop["round_ms"]) < 0.01
    # The eval runs went through the real harness: the scripted answers, computed in the
    # kernels, were scored right.
    throughput = [(t["concurrency"], t["tasks"], t["accuracy"]) for t in data["eval_throughput"]]
    assert throughput == [(1, 2, 1.0), (2, 2, 1.0)]
    assert data["kernel_memory"]["used_rss_mib"] > data["kernel_memory"]["fresh_rss_mib"] > 0
    gateway = data["gateway"]
    assert (gateway["concurrency"], gateway["tasks"], gateway["samples"]) == (2, 2, 2)
    assert gateway["local_accuracy"] == gateway["gateway_accuracy"] == 1.0  # shipped files, same answers
    assert gateway["gateway_execution_ms"] > 0 and "websocket_overhead_ms" in gateway


def test_the_bench_policy_answers_with_what_the_kernel_printed() -> None:
    first = (
        "# Instruction\nWhat is the mean value for key k07?\n\n"
        '# Data\nFile 1:\n{\n    "name": "t.csv",\n    "size": "1.0KB"\n}\n\n'
    )
    messages = [{"role": "user", "content": first}]
    assert "pd.read_csv('t.csv')" in bench_policy({"messages": messages})
    messages += [{"role": "assistant", "content": "a"}, {"role": "execute", "content": "x"}] * 2
    assert "df['key'] == 'k07'" in bench_policy({"messages": messages})
    messages += [{"role": "assistant", "content": "a"}, {"role": "execute", "content": "12.3456\n"}]
    assert bench_policy({"messages": messages}).endswith("@answer[12.3456]\n</Answer>")
