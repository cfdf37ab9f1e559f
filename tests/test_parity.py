"""Exact parity (``DeepAnalyze.parity``): the model is told what the reference loop would tell it.

The oracle is the reference's own ``execute_code``, run in a plain Python process over
the same blocks in the same order (one process for all of them, as the reference loop
runs); our side runs them in a real ipykernel (``KernelExecutor``) and in a real IPython
shell (``InProcessExecutor``, the magic) and must produce the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_deepanalyze.execution.inprocess import InProcessExecutor
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.execution.parity import RESULT_NAME
from jupyter_deepanalyze.feedback import FeedbackOptions

# The reference's execute_code, reproduced as the test oracle: RUC-DataLab/DeepAnalyze,
# deepanalyze.py, DeepAnalyzeVLLM.execute_code (MIT). It runs in its own process.
ORACLE = textwrap.dedent(
    '''
    import contextlib, io, json, os, sys, traceback

    def execute_code(code_str):
        stdout_capture = io.StringIO()
        stderr_capture = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout_capture), contextlib.redirect_stderr(stderr_capture):
                exec(code_str, {})
            output = stdout_capture.getvalue()
            if stderr_capture.getvalue():
                output += stderr_capture.getvalue()
            return output
        except Exception as exec_error:
            code_lines = code_str.splitlines()
            tb_lines = traceback.format_exc().splitlines()
            error_line = None
            for line in tb_lines:
                if 'File "<string>", line' in line:
                    try:
                        line_num = int(line.split(", line ")[1].split(",")[0])
                        error_line = line_num
                        break
                    except (IndexError, ValueError):
                        continue
            error_message = "Traceback (most recent call last):\\n"
            if error_line and 1 <= error_line <= len(code_lines):
                error_message += f'  File "<string>", line {error_line}, in <module>\\n'
                error_message += f"    {code_lines[error_line - 1].strip()}\\n"
            error_message += f"{type(exec_error).__name__}: {str(exec_error)}"
            if stderr_capture.getvalue():
                error_message += f"\\n{stderr_capture.getvalue()}"
            return f"[Error]:\\n{error_message.strip()}"

    blocks = json.loads(open(sys.argv[1]).read())
    os.chdir(sys.argv[2])
    results = [execute_code(block) for block in blocks]
    with open(sys.argv[3], "w") as handle:
        json.dump(results, handle)
    '''
)

BLOCKS = [
    # state: fresh globals per block, so the second block does not see x
    "x = 41\nprint(x + 1)",
    "print(x)",
    # a warning, then more output
    "import warnings\nwarnings.warn('careful with that')\nprint('after')",
    # a real pandas warning raised from the block's line
    "import pandas as pd\ns = pd.to_datetime(pd.Series(['13/02/2020', '14/02/2020']))\nprint(len(s))",
    # stdout and stderr, then an error: stdout dropped, stderr appended
    "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nimport warnings\n"
    "warnings.warn('late')\n1 / 0",
    # stdout before stderr whatever the order of the prints
    "import sys\nprint('err first', file=sys.stderr)\nprint('out second')",
    # a trailing expression shows nothing
    "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})\ndf.head()",
    # a figure saved to the working folder; no placeholder
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('line.png')\nprint('saved')",
    # big output: no cap
    "for i in range(4000):\n    print('row', i, 'x' * 30)",
    # __name__ is not __main__ under exec(code, {})
    "if __name__ == '__main__':\n    print('main')\nprint(__name__)",
    # the working folder is the run's
    "print(open('data.txt').read())",
    # a syntax error
    "x = (1,\nprint(x)",
    # an error inside a function the block defines
    "def f(v):\n    return v['missing']\n\nf({})",
    # a chained exception: the reference names the first <string> frame it prints
    "try:\n    int('nope')\nexcept ValueError:\n    raise KeyError('k')",
    # empty output, and non-ASCII text
    "value = 1",
    "print('naïve – ünïcode ✓')",
]


def reference_outputs(blocks: list[str], folder: Path, tmp_path: Path) -> list[str]:
    script, blocks_file, out_file = tmp_path / "oracle.py", tmp_path / "blocks.json", tmp_path / "oracle.json"
    script.write_text(ORACLE)
    blocks_file.write_text(json.dumps(blocks))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = [sys.executable, str(script), str(blocks_file), str(folder), str(out_file)]
    subprocess.run(command, check=True, env=env, timeout=300)
    return json.loads(out_file.read_text())


def print_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    """What Python's own ``showwarning`` does: the formatted warning on stderr."""
    (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def workdir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "data.txt").write_text("a,b\n1,2\n")
    return folder


async def test_the_kernel_tells_the_model_what_the_reference_would(tmp_path: Path) -> None:
    expected = reference_outputs(BLOCKS, workdir(tmp_path, "reference"), tmp_path)
    kernel = await KernelExecutor.start(cwd=workdir(tmp_path, "kernel"), feedback=FeedbackOptions.reference())
    try:
        got = [(await kernel.execute(block, timeout=60)).feedback for block in BLOCKS]
        # Nothing the blocks defined, and nothing of ours, is left in the namespace.
        reply = await kernel.execute_silent(
            "", {"left": f"sorted(n for n in ('x', 'df', 'f', 'value', {RESULT_NAME!r}) if n in globals())"}
        )
    finally:
        await kernel.shutdown()
    for block, want, have in zip(BLOCKS, expected, got, strict=True):
        assert have == want, block
    assert reply["user_expressions"]["left"]["data"]["text/plain"] == "[]"
    # The cases the oracle must really exercise.
    assert expected[1] == (
        '[Error]:\nTraceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
        "    print(x)\nNameError: name 'x' is not defined"
    )
    assert expected[2] == "after\n<string>:2: UserWarning: careful with that\n"
    assert expected[4].endswith("ZeroDivisionError: division by zero\nto stderr\n<string>:5: UserWarning: late")
    assert "to stdout" not in expected[4]
    assert expected[6] == "" and expected[7] == "saved\n" and len(expected[8]) > 100_000
    assert expected[9] == "builtins\n"
    assert expected[13].endswith("line 2, in <module>\n    int('nope')\nKeyError: 'k'")  # the chain's first frame


async def test_parity_cells_still_show_their_output_and_error_in_the_notebook(tmp_path: Path) -> None:
    kernel = await KernelExecutor.start(cwd=tmp_path, feedback=FeedbackOptions.reference())
    try:
        result = await kernel.execute("import sys\nprint('shown')\nprint('oops', file=sys.stderr)\n{}['k']")
        timed_out = await kernel.execute("import time\nprint('waiting')\ntime.sleep(30)", timeout=1)
        after = await kernel.execute("print('still usable')")
    finally:
        await kernel.shutdown()
    assert result.status == "error" and result.error is not None and result.error.ename == "KeyError"
    streams = {o["name"]: o["text"] for o in result.outputs if o["output_type"] == "stream"}
    assert streams == {"stdout": "shown\n", "stderr": "oops\n"}
    [error] = [o for o in result.outputs if o["output_type"] == "error"]
    assert error["traceback"] == [
        "Traceback (most recent call last):",
        '  File "<string>", line 4, in <module>',
        "    {}['k']",
        "KeyError: 'k'",
    ]
    assert result.feedback == "\n".join(["[Error]:", *error["traceback"], "oops"])
    assert (timed_out.status, timed_out.feedback) == ("timeout", "[Timeout]: execution exceeded 1 seconds")
    assert (after.status, after.feedback) == ("ok", "still usable\n")


async def test_the_magics_executor_tells_the_model_what_the_reference_would(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib_inline.backend_inline import configure_inline_support

    blocks = [b for b in BLOCKS if "data.txt" not in b]
    expected = reference_outputs(blocks, workdir(tmp_path, "reference"), tmp_path)
    shell = InteractiveShell.instance()
    inline = "module://matplotlib_inline.backend_inline"
    plt.switch_backend(inline)
    configure_inline_support(shell, inline)
    shell.reset(new_session=False)
    executor = InProcessExecutor(shell, feedback=FeedbackOptions.reference())
    folder = workdir(tmp_path, "shell")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings():
            # As in a notebook: warnings are printed (pytest records them instead).
            warnings.showwarning = print_warning
            got = [(await executor.execute(block, timeout=60)).feedback for block in blocks]
    finally:
        os.chdir(previous)
        plt.close("all")  # the shell is the process's: leave no figure to other tests
    for block, want, have in zip(blocks, expected, got, strict=True):
        assert have == want, block
    assert not {"x", "df", "f", "value", RESULT_NAME} & set(shell.user_ns)


@pytest.mark.parametrize("command", [["report"], ["eval", "dabench"]])
def test_the_parity_flag_is_the_setting(command: list[str], tmp_path: Path) -> None:
    jupyter = str(Path(sys.executable).parent / "jupyter")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run(
        [jupyter, "deepanalyze", *command, "--parity", "--show-config"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert ".parity = True" in done.stdout


def test_output_limit_zero_sends_everything_and_a_tiny_cap_is_refused() -> None:
    from traitlets import TraitError

    from jupyter_deepanalyze.config import DeepAnalyze

    assert DeepAnalyze(output_limit=0).feedback_options().limit is None
    assert DeepAnalyze(output_limit=None).feedback_options().limit is None
    with pytest.raises(TraitError, match="must be 0 \\(no cap\\) or at least 200"):
        DeepAnalyze(output_limit=50)
    assert DeepAnalyze(parity=True, output_limit=500).feedback_options() == FeedbackOptions.reference()


WARNING_BLOCKS = [
    "import pandas as pd\ns = pd.to_datetime(pd.Series(['13/02/2020', '14/02/2020']))\nprint(len(s))",
    "import warnings\nprint('before')\nwarnings.warn('first\\nsecond line')\nwarnings.warn('again', FutureWarning)",
]


async def test_by_default_warnings_name_the_block_as_the_reference_does(tmp_path: Path) -> None:
    expected = reference_outputs(WARNING_BLOCKS, workdir(tmp_path, "reference"), tmp_path)
    kernel = await KernelExecutor.start(cwd=workdir(tmp_path, "kernel"))  # default options
    try:
        results = [await kernel.execute(block, timeout=60) for block in WARNING_BLOCKS]
    finally:
        await kernel.shutdown()
    assert [r.feedback for r in results] == expected
    assert expected[0].startswith("2\n<string>:2: UserWarning: Parsing dates in %d/%m/%Y format")
    # The notebook keeps what the kernel printed (its file name and the source line).
    stderr = "".join(o["text"] for o in results[0].outputs if o.get("name") == "stderr")
    assert "ipykernel_" in stderr and "  s = pd.to_datetime(" in stderr


def reference_first_message(question: str, folder: Path) -> str:
    """The reference API's first message (RUC-DataLab/DeepAnalyze, API/utils.py:
    collect_file_info and prepare_vllm_messages), reproduced as the oracle."""
    info = ""
    for index, path in enumerate(sorted(p for p in folder.iterdir() if p.is_file()), start=1):
        entry = {"name": path.name, "size": f"{os.path.getsize(path) / 1024:.1f}KB"}
        info += f"File {index}:\n{json.dumps(entry, indent=4, ensure_ascii=False)}\n\n"
    body = question.strip() or "# Instruction"
    return f"# Instruction\n{body}\n\n# Data\n{info}" if info else f"# Instruction\n{body}"


def test_the_first_message_lists_the_given_files_as_the_reference_does(tmp_path: Path) -> None:
    from jupyter_deepanalyze.protocol import build_first_message
    from jupyter_deepanalyze.workspace import list_data_files, stage_inputs

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, size in [("sales.csv", 10_853), ("B.xlsx", 3), (".hidden.csv", 700), ("ünï.json", 0)]:
        (inputs / name).write_bytes(b"x" * size)
    folder = tmp_path / "run"
    names = stage_inputs(sorted(inputs.iterdir()), folder)
    ours = build_first_message("  Which month sold most?\n", list_data_files(folder, names))
    assert ours == reference_first_message("  Which month sold most?\n", folder)
    assert '"name": ".hidden.csv"' in ours  # a file given explicitly is listed, hidden or not
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_first_message("Q") == reference_first_message("Q", empty)


def test_folders_are_listed_inside_and_skip_hidden_parts(tmp_path: Path) -> None:
    from jupyter_deepanalyze.workspace import list_data_files

    (tmp_path / "data" / ".cache").mkdir(parents=True)
    (tmp_path / "data" / "a.csv").write_text("a\n")
    (tmp_path / "data" / ".cache" / "x.csv").write_text("x\n")
    (tmp_path / ".secret.env").write_text("KEY=1\n")
    assert [f.name for f in list_data_files(tmp_path, ["data"])] == ["data/a.csv"]
    assert [f.name for f in list_data_files(tmp_path)] == ["data/a.csv"]  # the whole folder: no hidden
