"""Training data: SFT trajectories, RL task rows, curriculum ordering.

Owns
(a) messages-JSONL SFT data, as the DeepAnalyze data is laid out (one user message, one
    assistant message holding the whole tagged trajectory, ``{"messages": [...]}`` per
    line), turned into ``input_ids`` and a loss mask that is 1 on the assistant's text
    and 0 on the prompt and on every ``<Execute>…</Execute>`` span, tags included;
(b) RL task rows (``RLTask``: question, data files, reward spec, ground truth) read
    from and written to JSONL, the DABench loader, and the first message a task's
    prompt holds;
(c) curriculum ordering: rows sorted by difficulty, or split into stages by it.

Data paths in files may start with ``shared:`` — resolved against ``DEEPANALYZE_SHARED``
or ``../shared`` next to the repository — so rows never embed a machine's layout.
Must not train or run code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_deepanalyze.llm.chat_template import render_prompt
from jupyter_deepanalyze.protocol import NATIVE, build_first_message
from jupyter_deepanalyze.workspace import list_data_files

from .rewards import RewardSpec

SHARED_ENV = "DEEPANALYZE_SHARED"
SHARED_PREFIX = "shared:"
REPO_ROOT = Path(__file__).resolve().parents[1]
DABENCH_LEVELS = {"easy": 1.0, "medium": 2.0, "hard": 3.0}


class DataError(ValueError):
    """A data file or row is malformed; the message names the file and line."""


def shared_root() -> Path:
    """``$DEEPANALYZE_SHARED``, else the ``shared`` folder beside the repository."""
    configured = os.environ.get(SHARED_ENV, "").strip()
    return Path(configured) if configured else REPO_ROOT.parent / "shared"


def resolve_path(raw: str | Path, base: str | Path | None = None) -> Path:
    """A data path: ``shared:REL`` under :func:`shared_root`, relative ones under ``base``."""
    text = str(raw)
    if text.startswith(SHARED_PREFIX):
        return shared_root() / text[len(SHARED_PREFIX) :]
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: a row must be a JSON object")
            yield row


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------- SFT

EXECUTE_SPAN = re.compile(r"<Execute>.*?</Execute>", re.DOTALL)


@dataclass
class TokenizedTrajectory:
    """Token ids of a rendered conversation and its loss mask (1 = trained on)."""

    input_ids: list[int]
    loss_mask: list[int]

    def labels(self, ignore_index: int = -100) -> list[int]:
        return [t if m else ignore_index for t, m in zip(self.input_ids, self.loss_mask, strict=True)]


def validate_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """A conversation: a user message first, then assistant (and execute) messages."""
    if not isinstance(messages, list) or len(messages) < 2:
        raise DataError(f"{where}: 'messages' must be a list of at least a user and an assistant message")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: every message needs a 'role' and a string 'content'")
        if message.get("role") not in ("system", "user", "assistant", "execute"):
            raise DataError(f"{where}: unknown role {message.get('role')!r}")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def tokenize_trajectory(messages: Sequence[Mapping[str, str]], tokenizer: Any) -> TokenizedTrajectory:
    """Render with the tokenizer's chat template; train on the assistant turn only.

    The loss covers everything the chat template puts after the prompt (the assistant's
    text and its end-of-turn token), except ``<Execute>…</Execute>`` spans, tags
    included: code output is never a target. Masks are assigned by character offsets of
    the full rendering, so the tokens are exactly those of the rendered conversation.
    """
    first_assistant = next(i for i, m in enumerate(messages) if m["role"] in ("assistant", "execute"))
    # The prompt as the model sees it when serving (the native rule of every path).
    prompt = render_prompt(tokenizer, messages[:first_assistant], NATIVE)
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not text.startswith(prompt):
        raise DataError("the chat template renders the prompt differently inside the conversation")
    if any(m["role"] == "execute" for m in messages) and "<Execute>" not in text[len(prompt) :]:
        raise DataError(
            "the chat template does not render 'execute' messages: put the executions inside the "
            "assistant message, or give the stage a chat_template that knows the role"
        )
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    excluded = [(m.start(), m.end()) for m in EXECUTE_SPAN.finditer(text, len(prompt))]
    eos = tokenizer.eos_token
    target_end = text.rfind(eos) + len(eos) if eos and text.rfind(eos) >= len(prompt) else len(text)
    mask = []
    for start, end in encoding["offset_mapping"]:
        trained = start >= len(prompt) and end <= target_end and end > start
        if trained and any(start < e and end > s for s, e in excluded):
            trained = False
        mask.append(int(trained))
    return TokenizedTrajectory(list(encoding["input_ids"]), mask)


def load_sft_rows(paths: Sequence[str | Path], base: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of messages-JSONL files, validated; each keeps its ``messages`` and extras."""
    rows = []
    for raw in paths:
        path = resolve_path(raw, base)
        for number, row in enumerate(read_jsonl(path), start=1):
            row["messages"] = validate_messages(row.get("messages"), f"{path}:{number}")
            rows.append(row)
    if not rows:
        raise DataError(f"no SFT rows in {', '.join(map(str, paths))}")
    return rows


def sft_row(question: str, files: Sequence[Any], trajectory: str, **extra: Any) -> dict[str, Any]:
    """One messages-JSONL row: the first message and the whole tagged trajectory."""
    return {
        "messages": [
            {"role": "user", "content": build_first_message(question, files)},
            {"role": "assistant", "content": trajectory},
        ],
        **extra,
    }


# ---------------------------------------------------------------------------- RL


@dataclass
class RLTask:
    """One RL task: what to ask, on which files, and how to score the answer."""

    id: str
    question: str
    files: list[str] = field(default_factory=list)
    """Paths (``shared:…``, absolute, or relative to the JSONL file's folder)."""
    reward: RewardSpec = field(default_factory=RewardSpec)
    ground_truth: Any = None
    """A string (``qa``), ``[[name, value], …]`` (``dabench``), or a reference text."""
    difficulty: float = 1.0
    """Larger is harder; the curriculum orders by it."""

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["reward"] = {k: v for k, v in asdict(self.reward).items() if v is not None}
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any], where: str = "row") -> RLTask:
        unknown = set(row) - set(cls.__dataclass_fields__)
        if unknown:
            raise DataError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(row.get("question"), str) or not row.get("id"):
            raise DataError(f"{where}: an RL task needs an 'id' and a 'question'")
        try:
            reward = RewardSpec.from_dict(row.get("reward"))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: {exc}") from None
        files = row.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise DataError(f"{where}: 'files' must be a list of paths")
        return cls(
            id=str(row["id"]),
            question=row["question"],
            files=list(files),
            reward=reward,
            ground_truth=row.get("ground_truth"),
            difficulty=float(row.get("difficulty", 1.0)),
        )

    def resolved_files(self, base: str | Path | None = None) -> list[Path]:
        paths = [resolve_path(f, base) for f in self.files]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise DataError(f"task {self.id}: missing data file(s): {', '.join(missing)}")
        return paths


def task_first_message(task: RLTask, base: str | Path | None = None) -> str:
    """The first user message of the task, its files described as the kernel will see them."""
    paths = task.resolved_files(base)
    if len({p.resolve().name for p in paths}) != len(paths):
        raise DataError(f"task {task.id}: two files share a name")
    # Staged copies keep names and sizes, so the originals describe them exactly.
    files = [f for p in paths for f in list_data_files(p.resolve().parent, [p.resolve().name])]
    return build_first_message(task.question, sorted(files, key=lambda f: f.name))


def load_rl_tasks(paths: Sequence[str | Path], base: str | Path | None = None) -> tuple[list[RLTask], dict[str, Path]]:
    """Tasks of RL-JSONL files, and for each task id the folder its relative paths start from."""
    tasks: list[RLTask] = []
    bases: dict[str, Path] = {}
    for raw in paths:
        path = resolve_path(raw, base)
        for number, row in enumerate(read_jsonl(path), start=1):
            task = RLTask.from_row(row, f"{path}:{number}")
            if task.id in bases:
                raise DataError(f"{path}:{number}: duplicate task id {task.id!r}")
            tasks.append(task)
            bases[task.id] = path.parent
    if not tasks:
        raise DataError(f"no RL tasks in {', '.join(map(str, paths))}")
    return tasks, bases


def load_dabench_tasks(
    ids: Iterable[int] | None = None, *, levels: Iterable[str] | None = None
) -> list[RLTask]:
    """DABench questions as RL tasks (``dabench`` reward, difficulty from the level)."""
    root = shared_root() / "benchmarks" / "dabench"
    labels = {row["id"]: row["common_answers"] for row in read_jsonl(root / "labels.jsonl")}
    wanted = set(ids) if ids is not None else None
    wanted_levels = set(levels) if levels is not None else None
    tasks = []
    for row in read_jsonl(root / "questions.jsonl"):
        if wanted is not None and row["id"] not in wanted:
            continue
        if wanted_levels is not None and row["level"] not in wanted_levels:
            continue
        question = (
            f"{row['question']}\n\nConstraints: {row['constraints']}\n\n"
            f"Answer format: {row['format']}"
        )
        tasks.append(
            RLTask(
                id=f"dabench-{row['id']}",
                question=question,
                files=[f"{SHARED_PREFIX}benchmarks/dabench/tables/{row['file_name']}"],
                reward=RewardSpec(kind="dabench"),
                ground_truth=labels[row["id"]],
                difficulty=DABENCH_LEVELS[row["level"]],
            )
        )
    return tasks


# -------------------------------------------------------------------- curriculum


def by_difficulty(rows: Sequence[Any], key: str = "difficulty") -> list[Any]:
    """Rows sorted easiest first (stable: equal difficulty keeps the given order)."""

    def difficulty(row: Any) -> float:
        value = row.get(key, 1.0) if isinstance(row, Mapping) else getattr(row, key, 1.0)
        return float(value)

    return sorted(rows, key=difficulty)


def curriculum_stages(rows: Sequence[Any], bounds: Sequence[float], key: str = "difficulty") -> list[list[Any]]:
    """Split rows into stages by difficulty: stage i holds ``bounds[i-1] < d <= bounds[i]``.

    Rows harder than the last bound go to a final stage; empty stages are kept, so the
    result always has ``len(bounds) + 1`` stages.
    """
    stages: list[list[Any]] = [[] for _ in range(len(bounds) + 1)]
    for row in by_difficulty(rows, key):
        value = row.get(key, 1.0) if isinstance(row, Mapping) else getattr(row, key, 1.0)
        index = next((i for i, bound in enumerate(bounds) if float(value) <= bound), len(bounds))
        stages[index].append(row)
    return stages
