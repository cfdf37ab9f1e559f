"""`jupyter deepanalyze` is one Jupyter application: config files, the command line and
`--help-all` set and show the same settings (the `DeepAnalyze` traits and each
subcommand's own), and the command line wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

JUPYTER = str(Path(sys.executable).parent / "jupyter")


def deepanalyze(*args: str, config_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    env.pop("DEEPANALYZE_MODEL", None)
    return subprocess.run(
        [JUPYTER, "deepanalyze", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def test_a_config_file_in_the_jupyter_config_dir_sets_report_settings(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm(["<Code>print('again')</Code>"] * 3)
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_deepanalyze_config.py").write_text(
        f"c.DeepAnalyze.model = {llm.url!r}\nc.DeepAnalyze.max_rounds = 1\nc.ReportApp.html = True\n"
    )
    done = deepanalyze("report", "-q", "Q", "-o", str(tmp_path / "r.ipynb"), config_dir=config)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == "jupyter deepanalyze: the run stopped after 1 rounds without a final answer"
    assert len(llm.requests) == 1
    assert (tmp_path / "r.html").exists()  # c.ReportApp.html
    cells = nbformat.read(tmp_path / "r.ipynb", as_version=4).cells
    assert [c.outputs[0]["text"] for c in cells if c.cell_type == "code"] == ["again\n"]


def test_the_command_line_beats_the_config_file(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm(["<Code>print('again')</Code>"] * 3)
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_deepanalyze_config.json").write_text(
        json.dumps({"DeepAnalyze": {"model": "http://127.0.0.1:9/v1", "max_rounds": 1}})
    )
    done = deepanalyze(
        "report", "-q", "Q", "-o", str(tmp_path / "r.ipynb"), "--model", llm.url, "--max-rounds", "2",
        config_dir=config,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == "jupyter deepanalyze: the run stopped after 2 rounds without a final answer"
    assert len(llm.requests) == 2


def test_models_reads_the_model_from_a_json_config_file(scripted_llm, tmp_path: Path) -> None:
    llm = scripted_llm([])
    (tmp_path / "jupyter_deepanalyze_config.json").write_text(json.dumps({"DeepAnalyze": {"model": llm.url}}))
    done = deepanalyze("models", config_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"spec:    {llm.url}" in done.stdout


def test_a_bad_value_in_the_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "jupyter_deepanalyze_config.py"
    path.write_text("c.DeepAnalyze.max_rounds = 0\n")
    done = deepanalyze("models", config_dir=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"jupyter deepanalyze: c.DeepAnalyze.max_rounds in {path} must be at least 1\n"
    path.write_text("c.EvalApp.concurrency = 'two'\n")
    done = deepanalyze("eval", "dabench", config_dir=tmp_path)
    assert done.stderr == f"jupyter deepanalyze: c.EvalApp.concurrency in {path}: expected a whole number, not 'two'\n"
    path.write_text("c.DeepAnalyze.max_rounds = undefined_name\n")
    broken = deepanalyze("models", config_dir=tmp_path)
    assert broken.returncode == 2 and broken.stderr.count("\n") == 1
    assert "cannot read the config file" in broken.stderr and "undefined_name" in broken.stderr


def test_help_all_lists_the_deepanalyze_settings_with_the_traits_help(tmp_path: Path) -> None:
    done = deepanalyze("report", "--help-all", config_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for option in ("--DeepAnalyze.max_rounds=<Int>", "--DeepAnalyze.output_limit=<Int>", "--ReportApp.kernel_name"):
        assert option in out
    assert "Maximum number of model turns in one run.\n    Default: 30" in out
    # The short options say what they set, with the trait's help and default.
    short = deepanalyze("report", "--help", config_dir=tmp_path).stdout
    assert "--max-rounds=<Int>\n    Maximum number of model turns in one run.\n    Default: 30\n" in short
    assert "Equivalent to: [--DeepAnalyze.execution_timeout]" in short
    top = deepanalyze("--help-all", config_dir=tmp_path).stdout
    assert "--EvalApp.concurrency=<Int>" in top and "--BenchApp.repeat=<Int>" in top


def test_no_command_or_an_unknown_one_is_a_usage_error(tmp_path: Path) -> None:
    bare = deepanalyze(config_dir=tmp_path)
    assert bare.returncode == 2 and "report" in bare.stderr and bare.stdout == ""
    unknown = deepanalyze("frobnicate", config_dir=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "jupyter deepanalyze: unknown command 'frobnicate': use one of report, eval, models, bench (--help)\n"
    )


def test_show_config_shows_the_settings_a_command_would_run_with(tmp_path: Path) -> None:
    (tmp_path / "jupyter_deepanalyze_config.py").write_text("c.DeepAnalyze.temperature = 0.2\n")
    done = deepanalyze("report", "--max-rounds", "3", "--show-config", config_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ".max_rounds = 3" in done.stdout and ".temperature = 0.2" in done.stdout
