"""Data-grounded trajectory synthesis: tasks from data files, trajectories from a teacher.

Owns the task templates (row counts, means, maxima, missing values, spreads,
correlations, …) instantiated on the columns of real tables; the ground truth of each
task, computed by running the template's reference code in the kernel environment; the
teachers that solve tasks in that environment (``AgentTeacher``: any OpenAI-compatible
model driving the project's own ``Agent`` loop, as at serving time; ``ReferenceTeacher``:
the template's reference code played as a two-step trajectory, for runs without a
teacher model, such as the tiny CPU curriculum); verification (only trajectories whose
final answer matches the ground truth, in the right format, are kept); and the files a
synthesis run writes into its ``output_dir``:

- ``sft_agent.jsonl``: verified multi-turn trajectories (stage 2a, cold start);
- ``sft_single.jsonl``: single-ability table-reading rows, answered from a table excerpt
  in the prompt without code (stage 1);
- ``rl_tasks.jsonl``: every task with its ground truth (stage 2b);
- ``synth_report.json``: counts of tasks, verified and rejected trajectories.

Must not train.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from .data import RLTask, resolve_path, sft_row, write_jsonl
from .env import EnvConfig, KernelEnvironment, KernelEpisode, observation_text
from .rewards import RewardSpec, answer_score, final_answer, format_ok

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------ templates


@dataclass(frozen=True)
class TaskTemplate:
    """A question pattern with the code that answers it.

    ``columns`` is how many numeric columns it takes (0, 1 or 2); ``{file}``, ``{a}`` and
    ``{b}`` are filled in the question, ``answer`` and ``code``. The code prints the value.
    """

    name: str
    question: str
    answer: str
    code: str
    difficulty: float
    columns: int = 0


TEMPLATES: tuple[TaskTemplate, ...] = (
    TaskTemplate("row_count", "How many rows does the table in {file} have?", "row_count", "print(len(df))", 1.0),
    TaskTemplate(
        "column_count", "How many columns does the table in {file} have?", "column_count", "print(df.shape[1])", 1.0
    ),
    TaskTemplate(
        "mean",
        'What is the mean of the column "{a}" in {file}? Round it to two decimal places.',
        "mean_{a}",
        'print(round(df["{a}"].mean(), 2))',
        2.0,
        1,
    ),
    TaskTemplate(
        "max", 'What is the largest value of the column "{a}" in {file}?', "max_{a}", 'print(df["{a}"].max())', 2.0, 1
    ),
    TaskTemplate(
        "missing",
        'How many values of the column "{a}" in {file} are missing?',
        "missing_{a}",
        'print(int(df["{a}"].isna().sum()))',
        2.0,
        1,
    ),
    TaskTemplate(
        "std",
        'What is the standard deviation of the column "{a}" in {file}? Round it to two decimal places.',
        "std_{a}",
        'print(round(df["{a}"].std(), 2))',
        3.0,
        1,
    ),
    TaskTemplate(
        "correlation",
        'What is the Pearson correlation between "{a}" and "{b}" in {file}? Round it to two decimal places.',
        "corr_{a}_{b}",
        'print(round(df["{a}"].corr(df["{b}"]), 2))',
        3.0,
        2,
    ),
)
TEMPLATES_BY_NAME = {t.name: t for t in TEMPLATES}


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower() or "value"


@dataclass
class SynthTask:
    """A template filled in for one table: the question and its reference code."""

    id: str
    table: Path
    question: str
    answer_name: str
    code: str
    difficulty: float
    ground_truth: str | None = None

    @property
    def load_code(self) -> str:
        return f'import pandas as pd\ndf = pd.read_csv("{self.table.name}")'

    def rl_task(self, table_ref: str) -> RLTask:
        return RLTask(
            id=self.id,
            question=self.question,
            files=[table_ref],
            reward=RewardSpec(kind="dabench"),
            ground_truth=[[self.answer_name, self.ground_truth or ""]],
            difficulty=self.difficulty,
        )


def instantiate(table: Path, templates: Sequence[TaskTemplate], max_columns: int) -> list[SynthTask]:
    """Fill the templates with the table's first ``max_columns`` numeric columns."""
    import pandas as pd

    frame = pd.read_csv(table, nrows=2000)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not str(c).startswith("Unnamed")]
    numeric = numeric[:max_columns] if max_columns else numeric
    stem = _slug(table.stem)
    tasks = []
    for template in templates:
        if template.columns == 0:
            choices: list[tuple[str, ...]] = [()]
        elif template.columns == 1:
            choices = [(c,) for c in numeric]
        else:
            choices = [(a, b) for i, a in enumerate(numeric) for b in numeric[i + 1 :]][:max_columns or None]
        for columns in choices:
            names = {
                "file": table.name,
                "a": columns[0] if columns else "",
                "b": columns[1] if len(columns) > 1 else "",
            }
            slugs = {k: _slug(str(v)) for k, v in names.items()}
            suffix = "-".join(slugs[k] for k in ("a", "b") if names[k])
            answer = template.answer.format(**slugs)
            question = template.question.format(**names) + f" Answer in the form @{answer}[value]."
            tasks.append(
                SynthTask(
                    id=f"{stem}-{template.name}" + (f"-{suffix}" if suffix else ""),
                    table=table,
                    question=question,
                    answer_name=answer,
                    code=template.code.format(**names),
                    difficulty=template.difficulty,
                )
            )
    return tasks


# -------------------------------------------------------------------------- teachers


class Teacher(Protocol):
    """Solves a task in an episode's kernel; returns the whole tagged trajectory or None."""

    async def solve(self, task: SynthTask, episode: KernelEpisode) -> str | None: ...


def _code_turn(plan: str, code: str) -> str:
    return f"<Analyze>\n{plan}\n</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"


class ReferenceTeacher:
    """Plays the template's reference code as an explore-then-compute trajectory.

    The code runs in the real kernel and the trajectory quotes what it printed; it needs
    no model, which is what a CPU-only run has.
    """

    async def solve(self, task: SynthTask, episode: KernelEpisode) -> str | None:
        explore = f"{task.load_code}\nprint(df.shape)\nprint(df.columns.tolist())"
        first = await episode.execute(explore)
        if first.status != "ok" or first.feedback is None:
            return None
        compute = f"{task.load_code}\n{task.code}"
        second = await episode.execute(compute)
        if second.status != "ok" or second.feedback is None:
            return None
        value = second.feedback.strip()
        return (
            _code_turn(f"I will load {task.table.name} with pandas and look at its size and columns first.", explore)
            + observation_text(first.feedback)
            + "<Understand>\nThe output shows the shape and the column names of the table.\n</Understand>\n"
            + _code_turn("Now I compute what the question asks for.", compute)
            + observation_text(second.feedback)
            + f"<Understand>\nThe result is {value}.\n</Understand>\n"
            + f"<Answer>\n@{task.answer_name}[{value}]\n</Answer>"
        )


def trajectory_from_messages(messages: Sequence[dict[str, str]]) -> str:
    """One assistant text from a run's messages (the SFT layout): turns and observations."""
    parts = []
    for message in messages:
        if message["role"] == "assistant":
            parts.append(message["content"])
        elif message["role"] == "execute":
            parts.append(observation_text(message["content"]))
        elif message["role"] == "user" and message["content"].startswith("<Execute>\n"):
            inner = message["content"][len("<Execute>\n") : -len("\n</Execute>")]  # generic dialect
            parts.append(observation_text(inner))
    return "".join(parts)


class AgentTeacher:
    """A teacher model (any OpenAI-compatible endpoint) running the project's ``Agent``."""

    def __init__(self, model: Any, *, max_rounds: int = 30, temperature: float = 0.5, max_tokens: int = 8192) -> None:
        self.model = model
        self.max_rounds = max_rounds
        self.temperature = temperature
        self.max_tokens = max_tokens

    async def solve(self, task: SynthTask, episode: KernelEpisode) -> str | None:
        from jupyter_deepanalyze.agent import Agent, Task

        agent = Agent(
            self.model,
            episode.executor,
            max_rounds=self.max_rounds,
            execution_timeout=episode.config.execution_timeout,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        async for event in agent.run(Task(task.question, files=episode.files)):
            if event.type == "run_finished" and event.status != "completed":
                log.info("teacher run on %s ended %s: %s", task.id, event.status, getattr(event, "error", None))
                return None
        return trajectory_from_messages(agent.messages[1:])


# ---------------------------------------------------------------------------- runs


@dataclass
class TeacherConfig:
    """Who writes the trajectories."""

    kind: Literal["reference", "openai"] = "reference"
    """``openai``: a model behind an OpenAI-compatible URL runs the agent; ``reference``:
    the templates' own code (no model needed)."""
    base_url: str = ""
    """``http(s)://host:port/v1`` of the teacher (``openai``)."""
    model_name: str = ""
    """Served model name; empty asks the server's ``/v1/models``."""
    api_key_env: str = "DEEPANALYZE_TEACHER_API_KEY"
    """Environment variable holding the API key."""
    dialect: Literal["auto", "native", "generic"] = "auto"
    temperature: float = 0.5
    max_rounds: int = 30
    max_tokens: int = 8192
    samples_per_task: int = 1
    """Attempts per task; every verified one is kept."""


@dataclass
class SynthConfig:
    """A synthesis run."""

    output_dir: str
    tables: list[str]
    """CSV files (paths or ``shared:…``) the tasks are about."""
    templates: list[str] = field(default_factory=lambda: [t.name for t in TEMPLATES])
    """Template names to use (default: all)."""
    max_columns: int = 2
    """Numeric columns per table each template is filled with (0: all)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    single_ability: bool = True
    """Also write ``sft_single.jsonl`` (table-reading rows for stage 1)."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.templates if name not in TEMPLATES_BY_NAME]
        if unknown:
            raise ValueError(f"unknown template {unknown[0]!r} (known: {', '.join(TEMPLATES_BY_NAME)})")
        if not self.tables:
            raise ValueError("tables: name at least one CSV file")


@dataclass
class SynthReport:
    tasks: int = 0
    tasks_with_ground_truth: int = 0
    trajectories: int = 0
    verified: int = 0
    rejected: int = 0
    single_ability: int = 0
    files: dict[str, str] = field(default_factory=dict)


def verify(trajectory: str | None, task: SynthTask) -> bool:
    """Kept only if well formed (fenced python code) and its answer matches the ground truth."""
    if trajectory is None or task.ground_truth is None:
        return False
    if not format_ok(trajectory, require_python_fence=True):
        return False
    labels = [[task.answer_name, task.ground_truth]]
    return answer_score(final_answer(trajectory), labels, kind="dabench") == 1.0


async def ground_truth(env: KernelEnvironment, task: SynthTask) -> str | None:
    """What the reference code prints, run in a fresh kernel episode; None if it fails."""
    async with env.episode([task.table], name=f"truth-{task.id}") as episode:
        result = await episode.execute(f"{task.load_code}\n{task.code}")
    if result.status != "ok" or not result.feedback or not result.feedback.strip():
        return None
    value = result.feedback.strip()
    return None if "\n" in value or value.lower() == "nan" else value


def single_ability_rows(table: Path, tasks: Sequence[SynthTask], excerpt_rows: int = 3) -> list[dict[str, Any]]:
    """Table-reading rows answered from an excerpt in the prompt (no code, no execution)."""
    import pandas as pd

    frame = pd.read_csv(table, nrows=excerpt_rows)
    excerpt = frame.to_csv(index=False).strip()
    columns = [str(c) for c in frame.columns]
    rows = []
    facts = [
        ("How many columns does this table have?", "column_count", str(len(columns)),
         "I count the names in the header line."),
        ("What is the name of the first column of this table?", "first_column", columns[0],
         "The header line starts with it."),
    ]
    for task in tasks:
        if task.answer_name.startswith("max_") and task.ground_truth is not None:
            column = next((c for c in columns if _slug(c) == task.answer_name[4:]), None)
            if column is not None and pd.api.types.is_numeric_dtype(frame[column]):
                facts.append(
                    (
                        f'What is the value of "{column}" in the first row of this table?',
                        f"first_{_slug(column)}",
                        str(frame[column].iloc[0]),
                        f'I find the "{column}" column in the header and read the first data row.',
                    )
                )
    for question, name, value, reasoning in facts:
        prompt = f"{question} Answer in the form @{name}[value].\n\n```csv\n{excerpt}\n```"
        trajectory = f"<Analyze>\n{reasoning}\n</Analyze>\n<Answer>\n@{name}[{value}]\n</Answer>"
        rows.append(sft_row(prompt, [], trajectory, source="synth-single", difficulty=1.0))
    return rows


async def make_teacher(config: TeacherConfig) -> tuple[Teacher, Any]:
    """The teacher and what must be closed afterwards (the model client, or None)."""
    if config.kind == "reference":
        return ReferenceTeacher(), None
    from jupyter_deepanalyze.config import DeepAnalyze
    from jupyter_deepanalyze.llm.registry import open_model

    if not config.base_url:
        raise ValueError("teacher.base_url is required for an openai teacher")
    settings = DeepAnalyze(
        model=config.base_url,
        model_name=config.model_name,
        api_key=os.environ.get(config.api_key_env, ""),
        dialect=config.dialect,
    )
    model = await open_model(settings, config.base_url)
    teacher = AgentTeacher(
        model, max_rounds=config.max_rounds, temperature=config.temperature, max_tokens=config.max_tokens
    )
    return teacher, model


async def synthesize(config: SynthConfig, *, teacher: Teacher | None = None) -> SynthReport:
    """Run a synthesis; writes the files named in the module docstring."""
    from tqdm.auto import tqdm

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    templates = [TEMPLATES_BY_NAME[name] for name in config.templates]
    tables = {ref: resolve_path(ref) for ref in config.tables}
    missing = [str(p) for p in tables.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such table: {missing[0]}")
    tasks_by_table = {ref: instantiate(path, templates, config.max_columns) for ref, path in tables.items()}
    report = SynthReport()
    closer = None
    if teacher is None:
        teacher, closer = await make_teacher(config.teacher)
    agent_rows: list[dict[str, Any]] = []
    rl_rows: list[dict[str, Any]] = []
    try:
        async with KernelEnvironment(config.env) as env:
            all_tasks = [t for tasks in tasks_by_table.values() for t in tasks]
            report.tasks = len(all_tasks)
            truths = await asyncio.gather(*(ground_truth(env, t) for t in all_tasks))
            for task, truth in zip(all_tasks, truths, strict=True):
                task.ground_truth = truth

            async def attempt(task: SynthTask, sample: int) -> tuple[SynthTask, str | None]:
                async with env.episode([task.table], name=f"{task.id}-{sample}") as episode:
                    return task, await teacher.solve(task, episode)

            jobs = [
                attempt(task, sample)
                for task in all_tasks
                if task.ground_truth is not None
                for sample in range(config.teacher.samples_per_task)
            ]
            with tqdm(total=len(jobs), desc="Synthesizing trajectories", unit="traj") as bar:
                for finished in asyncio.as_completed(jobs):
                    task, trajectory = await finished
                    bar.update()
                    report.trajectories += 1
                    if verify(trajectory, task):
                        report.verified += 1
                        agent_rows.append(
                            sft_row(
                                task.question,
                                _files_of(task),
                                trajectory or "",
                                source="synth-agent",
                                task_id=task.id,
                                difficulty=task.difficulty,
                            )
                        )
                    else:
                        report.rejected += 1
    finally:
        if closer is not None:
            await closer.aclose()
    single_rows = []
    for ref, tasks in tasks_by_table.items():
        report.tasks_with_ground_truth += sum(t.ground_truth is not None for t in tasks)
        rl_rows.extend(t.rl_task(ref).to_row() for t in tasks if t.ground_truth is not None)
        if config.single_ability:
            single_rows.extend(single_ability_rows(tables[ref], tasks))
    agent_rows.sort(key=lambda row: (row["difficulty"], row["task_id"]))
    report.files["sft_agent"] = str(output / "sft_agent.jsonl")
    write_jsonl(report.files["sft_agent"], agent_rows)
    report.files["rl_tasks"] = str(output / "rl_tasks.jsonl")
    write_jsonl(report.files["rl_tasks"], rl_rows)
    if config.single_ability:
        report.single_ability = len(single_rows)
        report.files["sft_single"] = str(output / "sft_single.jsonl")
        write_jsonl(report.files["sft_single"], single_rows)
    (output / "synth_report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _files_of(task: SynthTask) -> list[Any]:
    from jupyter_deepanalyze.workspace import list_data_files

    return list_data_files(task.table.parent, [task.table.name])


def run_synth(config: SynthConfig) -> SynthReport:
    """Synchronous entry point of the CLI."""
    return asyncio.run(synthesize(config))
