"""Follow-ups in the core (PROTOCOL.md, "Follow-ups"): the parent's messages as they were
sent, then the new question; the same kernel; old outputs shortened when the history no
longer fits the context window. Scripted model server, real kernel."""

from __future__ import annotations

from pathlib import Path

from jupyter_deepanalyze.agent import Task
from jupyter_deepanalyze.conversation import (
    SHORTENED_OUTPUT_CHARS,
    Conversation,
    follow_up_messages,
    shorten_history,
)
from jupyter_deepanalyze.events import RunFinished, RunStarted
from jupyter_deepanalyze.execution.kernel import KernelExecutor
from jupyter_deepanalyze.feedback import cap_output
from jupyter_deepanalyze.protocol import GENERIC, NATIVE, build_first_message
from jupyter_deepanalyze.workspace import list_data_files

from ..scripted_llm import run_agent

LOAD = (
    "<Analyze>\nLoad the data.\n</Analyze>\n"
    "<Code>\n```python\nimport pandas as pd\ndf = pd.read_csv('Simpson.csv')\nprint(df.shape)\n```\n</Code>"
)
ANSWER = "<Answer>\nThe table has 4 columns.\n</Answer>"
BY_DEPT = (
    "<Analyze>\nReuse df from before.\n</Analyze>\n"
    "<Code>\n```python\nby_dept = df.groupby('dept')['success'].mean().round(3)\nprint(by_dept.to_dict())\n```\n</Code>"
)
FOLLOW_ANSWER = "<Answer>\nDepartment rates are listed above.\n</Answer>"


async def test_a_follow_up_sends_the_parent_messages_then_the_new_question_on_the_same_kernel(
    scripted_llm, executor: KernelExecutor, workdir: Path
) -> None:
    first_llm = scripted_llm([LOAD, ANSWER])
    parent, _ = await run_agent(first_llm, executor, Task("How big is the table?", list_data_files(workdir)))
    (workdir / "notes.txt").write_text("a file that appeared since\n")

    llm = scripted_llm([BY_DEPT, FOLLOW_ANSWER])
    files = list_data_files(workdir)
    follow_up, events = await run_agent(llm, executor, Task("And by department?", files, follows=parent.conversation()))

    # Byte for byte: the parent's messages as sent, then the new question built like a
    # first message, the working folder's files as they are now.
    question = {"role": "user", "content": build_first_message("And by department?", files)}
    assert "notes.txt" in question["content"]
    history = first_llm.requests[-1]["messages"] + [{"role": "assistant", "content": ANSWER}]
    assert parent.messages == history
    assert llm.requests[0]["messages"] == history + [question]
    # The same kernel: the follow-up's code used the parent's `df`.
    ran = next(e for e in events if e.type == "execution_finished")
    assert ran.status == "ok" and ran.feedback.startswith("{'A_hard': ")
    started = events[0]
    assert isinstance(started, RunStarted) and started.parent_run_id == parent.run_id
    assert follow_up.status == "completed" and follow_up.run_id != parent.run_id
    assert follow_up.messages[: len(history) + 1] == history + [question]


def test_follow_up_messages_keep_the_generic_system_prompt_once_and_start_afresh_without_history() -> None:
    first = build_first_message("q1")
    history = GENERIC.initial_messages(first) + [{"role": "assistant", "content": ANSWER}]
    second = build_first_message("q2")

    assert follow_up_messages(GENERIC, history, second) == history + [{"role": "user", "content": second}]
    assert [m["role"] for m in follow_up_messages(GENERIC, history, second)].count("system") == 1
    assert follow_up_messages(GENERIC, [], second) == GENERIC.initial_messages(second)
    assert Conversation.of("r", history).messages == tuple(history)


def test_shortening_cuts_the_oldest_long_execute_outputs_first_and_never_a_user_message() -> None:
    old, newer, short = "o" * 5000, "n" * 5000, "s" * 1500
    question = "# Instruction\n" + "q" * 9000
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": LOAD},
        {"role": "execute", "content": old},
        {"role": "assistant", "content": LOAD},
        {"role": "execute", "content": short},
        {"role": "assistant", "content": LOAD},
        {"role": "execute", "content": newer},
    ]

    one = shorten_history(messages, NATIVE)  # the backend did not say by how much: one output
    shortened = {"role": "execute", "content": cap_output(old, SHORTENED_OUTPUT_CHARS)}
    assert one == messages[:2] + [shortened] + messages[3:]
    assert one[2]["content"].count("characters omitted") == 1
    assert len(one[2]["content"]) < 1100

    both = shorten_history(messages, NATIVE, chars=5000)  # more than the oldest frees
    assert [m["content"] for m in both] == [
        question, LOAD, cap_output(old, 1000), LOAD, short, LOAD, cap_output(newer, 1000)
    ]
    assert shorten_history(both, NATIVE) is None  # nothing long is left; user text is never cut

    wrapped = [dict(m) for m in messages]
    wrapped[2] = GENERIC.execute_message(old)
    generic = shorten_history(wrapped, GENERIC)
    assert generic[2] == {"role": "user", "content": f"<Execute>\n{cap_output(old, 1000)}\n</Execute>"}
    assert generic[0] == wrapped[0]


BIG = "<Analyze>\nPrint a lot.\n</Analyze>\n<Code>\n```python\nprint('x' * 13300)\n```\n</Code>"
MORE = "<Analyze>\nPrint some more.\n</Analyze>\n<Code>\n```python\nprint('y' * 1900)\n```\n</Code>"


async def test_a_follow_up_that_outgrows_the_window_shortens_the_oldest_output_and_goes_on(
    scripted_llm, executor: KernelExecutor
) -> None:
    # The scripted server counts 4 characters per token and refuses what exceeds its window.
    first_llm = scripted_llm([BIG, ANSWER], max_model_len=3700)
    parent, _ = await run_agent(first_llm, executor, Task("Print a lot."))
    assert parent.status == "completed"
    big_output = "x" * 13300 + "\n"
    assert {"role": "execute", "content": big_output} in parent.messages

    llm = scripted_llm([MORE, FOLLOW_ANSWER], max_model_len=3700)
    follow_up, events = await run_agent(llm, executor, Task("And more?", follows=parent.conversation()))

    assert follow_up.status == "completed", [e for e in events if isinstance(e, RunFinished)]
    first, refused, retried = llm.requests[0], llm.requests[1], llm.requests[2]
    assert {"role": "execute", "content": big_output} in first["messages"]
    assert refused["messages"] == first["messages"] + [
        {"role": "assistant", "content": MORE},
        {"role": "execute", "content": "y" * 1900 + "\n"},
    ]
    # The retry: the oldest long output shortened (head and tail, saying so), all else as sent.
    expected = [
        {"role": "execute", "content": cap_output(big_output, 1000)} if m["content"] == big_output else m
        for m in refused["messages"]
    ]
    assert retried["messages"] == expected
    assert "[12301 characters omitted]" in cap_output(big_output, 1000)
    assert len(llm.requests) == 3 and follow_up.messages[: len(expected)] == expected


async def test_a_history_with_nothing_left_to_shorten_ends_the_run_with_the_window_message(
    scripted_llm, executor: KernelExecutor
) -> None:
    llm = scripted_llm([MORE, ANSWER], max_model_len=480)
    agent, events = await run_agent(llm, executor, Task("Print some."))

    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "failed"
    assert finished.error is not None and "context window (480 tokens) is full" in finished.error
