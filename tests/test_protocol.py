"""protocol.py against PROTOCOL.md: parsing, code extraction, first message, feedback."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_deepanalyze.feedback import (
    ExecutionError,
    FeedbackOptions,
    cap_output,
    error_line_number,
    format_feedback,
)
from jupyter_deepanalyze.protocol import (
    GENERIC,
    NATIVE,
    DataFile,
    Segment,
    SegmentDelta,
    SegmentParser,
    VariableInfo,
    build_first_message,
    close_open_code,
    dialect_for,
    extract_code,
    parse_segments,
)

TURN = (
    "<Analyze>\nPlan: load the data.\n</Analyze>\n"
    "<Code>\n```python\nimport pandas as pd\nprint('<Answer>')\n```\n</Code>"
)


def _feed_in_chunks(text: str, sizes: list[int]) -> tuple[list[Segment], list[SegmentDelta | Segment]]:
    parser = SegmentParser()
    items: list[SegmentDelta | Segment] = []
    position = 0
    for size in sizes:
        items += parser.feed(text[position : position + size])
        position += size
    items += parser.feed(text[position:]) + parser.close()
    return [i for i in items if isinstance(i, Segment)], items


def test_parser_splits_a_turn_into_tagged_segments() -> None:
    assert parse_segments(TURN) == [
        Segment("Analyze", "\nPlan: load the data.\n"),
        Segment("Code", "\n```python\nimport pandas as pd\nprint('<Answer>')\n```\n"),
    ]


def test_parser_keeps_text_outside_tags_as_notes_and_ignores_whitespace() -> None:
    segments = parse_segments("Let me think.\n<Analyze>a</Analyze>\n\n<Answer>done</Answer>\ntrailing words")
    assert segments == [
        Segment(None, "Let me think.\n"),
        Segment("Analyze", "a"),
        Segment("Answer", "done"),
        Segment(None, "\ntrailing words"),
    ]


def test_parser_reports_an_unclosed_tag_at_the_end_of_a_turn() -> None:
    assert parse_segments("<Code>\nprint(1)\n") == [Segment("Code", "\nprint(1)\n", closed=False)]


def test_an_opening_tag_ends_a_forgotten_analyze_but_not_code() -> None:
    segments = parse_segments("<Analyze>plan<Code>x = '<Analyze>'</Code>")
    assert segments == [Segment("Analyze", "plan", closed=False), Segment("Code", "x = '<Analyze>'")]


def test_tags_split_across_chunks_are_recognised() -> None:
    segments, items = _feed_in_chunks(TURN, [3, 1, 1, 5, 2, 9, 1, 1, 1, 4])
    assert segments == parse_segments(TURN)
    # No delta ever contains a piece of a tag.
    assert not any(
        isinstance(i, SegmentDelta) and re.search(r"</?[A-Z]", i.text.replace("<Answer>", "")) for i in items
    )


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(["<Analyze>", "</Analyze>", "<Code>", "</Code>", "<Answer>", "</Answer>",
                             "<Understand>", "</Understand>", "<Execute>", "</Execute>",
                             "<", "</", "```python\n", "\n"]),
            st.text(alphabet="ab <>/\n`AC", max_size=8),
        ),
        max_size=25,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=40),
)
def test_parsing_is_the_same_however_the_text_is_chunked(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    whole = parse_segments(text)
    segments, items = _feed_in_chunks(text, cuts)
    assert segments == whole
    # The deltas before each finished segment spell exactly its text.
    pending: list[str] = []
    for item in items:
        if isinstance(item, SegmentDelta):
            pending.append(item.text)
        else:
            assert "".join(pending) == item.text
            pending = []
    assert not pending


def test_code_is_the_fenced_part_or_the_whole_block() -> None:
    assert extract_code("\n```python\nx = 1\nprint(x)\n```\n") == "x = 1\nprint(x)"
    assert extract_code("\nx = 1\n") == "x = 1"
    assert extract_code("```\ny = 2\n```") == "y = 2"
    assert extract_code("```py\nz = 3\n```") == "z = 3"
    assert extract_code("Here:\n```python\na = 1\n```\nand\n```python\nb = 2\n```") == "a = 1"
    assert extract_code("```python\nunclosed = True\n") == "unclosed = True"
    assert extract_code("```print(1)```") == "print(1)"


def test_close_open_code_only_closes_a_dangling_code_block() -> None:
    assert close_open_code("<Analyze>a</Analyze><Code>\nprint(1)") == "<Analyze>a</Analyze><Code>\nprint(1)</Code>"
    assert close_open_code("<Code>x</Code>") == "<Code>x</Code>"
    assert close_open_code("<Answer>done") == "<Answer>done"


def test_first_message_is_byte_exact_for_the_simpson_example(simpson_csv: Path) -> None:
    message = build_first_message(
        "Analyze which teaching method (treatment) performs better.",
        [DataFile("Simpson.csv", simpson_csv.stat().st_size)],
    )
    assert message == (
        "# Instruction\n"
        "Analyze which teaching method (treatment) performs better.\n"
        "\n"
        "# Data\n"
        "File 1:\n"
        "{\n"
        '    "name": "Simpson.csv",\n'
        '    "size": "68.8KB"\n'
        "}\n"
        "\n"
    )


def test_first_message_sorts_files_and_formats_sizes() -> None:
    message = build_first_message("  Report.  ", [DataFile("b.csv", 1572864), DataFile("a é.csv", 512)])
    assert message == (
        '# Instruction\nReport.\n\n# Data\nFile 1:\n{\n    "name": "a é.csv",\n    "size": "0.5KB"\n}\n\n'
        'File 2:\n{\n    "name": "b.csv",\n    "size": "1536.0KB"\n}\n\n'
    )


def test_first_message_without_data_is_the_instruction_alone() -> None:
    assert build_first_message("Hi") == "# Instruction\nHi"


def test_live_variables_are_described_after_the_files() -> None:
    df = VariableInfo("df", "pandas.DataFrame", (2000, 2), (("dept", "object"), ("success", "int64")))
    message = build_first_message("Q", [DataFile("x.csv", 1024)], [df])
    data = message.split("# Data\n", 1)[1]
    assert data.startswith('File 1:\n{\n    "name": "x.csv",\n    "size": "1.0KB"\n}\n\n')
    described = json.loads(data.split("Variable 1:\n", 1)[1])
    assert described == {
        "name": "df",
        "type": "pandas.DataFrame",
        "shape": [2000, 2],
        "columns": "dept (object), success (int64)",
    }


IPYTHON_TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[7], line 3\x1b[0m\n\x1b[1;32m      1\x1b[0m x \x1b[38;5;241m=\x1b[39m \x1b[38;5;241m1\x1b[39m\n",
    "File \x1b[0;32m~/pandas/core/frame.py:4102\x1b[0m, in \x1b[0;36mDataFrame.__getitem__\x1b[0;34m(self, key)\x1b[0m",
    "\x1b[0;31mKeyError\x1b[0m: 'missing'",
]


def test_error_line_comes_from_the_cell_frame_without_ansi_codes() -> None:
    assert error_line_number(IPYTHON_TRACEBACK) == 3
    assert error_line_number(["Input In [4], in <cell line: 2>()"]) == 2
    assert error_line_number(["no frame here"]) is None


def test_feedback_for_an_error_is_the_reference_form_after_what_was_printed() -> None:
    code = "x = 1\nprint('before')\n   df['missing']  \n"
    outputs = [{"output_type": "stream", "name": "stdout", "text": "before\n"}]
    error = ExecutionError("KeyError", "'missing'", IPYTHON_TRACEBACK)
    expected_error = (
        "[Error]:\nTraceback (most recent call last):\n"
        '  File "<string>", line 3, in <module>\n'
        "    df['missing']\n"
        "KeyError: 'missing'"
    )
    assert format_feedback(code, outputs, error=error) == "before\n" + expected_error
    parity = FeedbackOptions(keep_output_before_error=False)
    assert format_feedback(code, outputs, error=error, options=parity) == expected_error


def test_syntax_errors_name_the_source_like_exec_does() -> None:
    error = ExecutionError(
        "SyntaxError", "incomplete input (3365215563.py, line 1)", ["  Cell In[2], line 1\n    def f(\n"]
    )
    assert format_feedback("def f(", [], error=error) == (
        '[Error]:\nTraceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
        "    def f(\nSyntaxError: incomplete input (<string>, line 1)"
    )


def test_an_unknown_error_line_leaves_out_the_file_lines() -> None:
    error = ExecutionError("ValueError", "bad", ["Cell In[1], line 9"])
    assert format_feedback("x = 1", [], error=error) == (
        "[Error]:\nTraceback (most recent call last):\nValueError: bad"
    )


def test_warnings_read_as_exec_prints_them_whatever_the_cell_file() -> None:
    code = "import warnings\nwarnings.warn('a')\nvalue = helper()\n"
    stderr = (
        "<ipython-input-4-6f2a1b>:2: UserWarning: a\n  warnings.warn('a')\n"
        "/tmp/ipykernel_77/1234.py:3: FutureWarning: two\nlines\n  value = helper()\n"
        "/tmp/ipykernel_77/999.py:40: RuntimeWarning: from an earlier cell\n  other_cell()\n"
        "/usr/lib/python3/site.py:1: UserWarning: a library's own file stays\n"
    )
    outputs = [{"output_type": "stream", "name": "stderr", "text": stderr}]
    assert format_feedback(code, outputs) == (
        "<string>:2: UserWarning: a\n"
        "<string>:3: FutureWarning: two\nlines\n"
        "<string>:40: RuntimeWarning: from an earlier cell\n  other_cell()\n"
        "/usr/lib/python3/site.py:1: UserWarning: a library's own file stays\n"
    )


def _png(width: int, height: int) -> str:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    raw = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return base64.b64encode(raw).decode()


def test_feedback_sends_stdout_then_stderr_results_and_figure_placeholders() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "1\n"},
        {"output_type": "stream", "name": "stderr", "text": "warning\n"},
        {"output_type": "display_data", "data": {"image/png": _png(640, 480), "text/plain": "<Figure>"}},
        {"output_type": "stream", "name": "stdout", "text": "2\n"},
        {"output_type": "execute_result", "data": {"text/plain": "   a\n0  1", "text/html": "<table>"}},
    ]
    assert format_feedback("", outputs) == "1\n[figure 1: 640x480 PNG]\n2\n   a\n0  1\nwarning\n"
    only_printed = FeedbackOptions(show_results=False)
    assert format_feedback("", outputs, options=only_printed) == "1\n2\nwarning\n"


def test_printed_output_is_sent_exactly_as_printed() -> None:
    outputs = [{"output_type": "stream", "name": "stdout", "text": "  spaced  \n\n"}]
    assert format_feedback("", outputs) == "  spaced  \n\n"


def test_timeouts_use_the_reference_message() -> None:
    outputs = [{"output_type": "stream", "name": "stdout", "text": "started"}]
    assert format_feedback("", outputs, timeout=30) == "started\n[Timeout]: execution exceeded 30 seconds"


def test_long_output_keeps_head_and_tail_and_says_what_was_cut() -> None:
    text = "".join(f"line {i}\n" for i in range(10000))
    capped = cap_output(text, 1000)
    assert len(capped) < 1100
    assert capped.startswith("line 0\n") and capped.endswith("line 9999\n")
    omitted = int(re.search(r"\[(\d+) characters omitted\]", capped).group(1))
    assert omitted == len(text) - 1000
    assert cap_output("short", 1000) == "short"
    assert cap_output(text, None) == text


def test_native_dialect_uses_the_execute_role_and_no_system_prompt() -> None:
    assert NATIVE.initial_messages("# Instruction\nQ") == [{"role": "user", "content": "# Instruction\nQ"}]
    assert NATIVE.execute_message("1\n") == {"role": "execute", "content": "1\n"}
    assert NATIVE.request_extras == {"add_generation_prompt": False}


def test_generic_dialect_explains_the_tags_and_sends_output_as_user_text() -> None:
    messages = GENERIC.initial_messages("# Instruction\nQ")
    assert messages[0]["role"] == "system"
    for tag in ("<Analyze>", "<Understand>", "<Code>", "<Execute>", "<Answer>"):
        assert tag in messages[0]["content"]
    # As the reference builds it: f"<Execute>\n{output}\n</Execute>", output untouched.
    assert GENERIC.execute_message("1\n") == {"role": "user", "content": "<Execute>\n1\n\n</Execute>"}
    assert "add_generation_prompt" not in GENERIC.request_extras


def test_dialect_is_chosen_by_model_name_and_overridable() -> None:
    assert dialect_for("DeepAnalyze-8B") is NATIVE
    assert dialect_for("RUC-DataLab/deepanalyze_8b") is NATIVE
    assert dialect_for("gpt-4o") is GENERIC
    assert dialect_for("gpt-4o", "native") is NATIVE
    assert dialect_for("DeepAnalyze-8B", "generic") is GENERIC


def test_columns_are_described_only_when_the_dialect_asks_for_them() -> None:
    table = DataFile("sales.csv", 2048, ("date", "region", "revenue"))
    assert build_first_message("Q", [table]) == build_first_message("Q", [DataFile("sales.csv", 2048)])
    described = build_first_message("Q", [table], columns=True)
    entry = json.loads(described.split("File 1:\n", 1)[1])
    assert entry == {"name": "sales.csv", "size": "2.0KB", "columns": "date, region, revenue"}
    assert NATIVE.first_message("Q", [table]) == build_first_message("Q", [table])  # byte-exact stays
