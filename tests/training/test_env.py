"""The kernel environment with a real ipykernel: state, stateless mode, timeouts, resets."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.env import EnvConfig, EnvironmentThread, KernelEnvironment, observation_text

TURN = "<Analyze>look</Analyze>\n<Code>\n```python\n{code}\n```\n</Code>"


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    path.write_text("region,amount\nnorth,10\nsouth,32\n")
    return path


async def test_episode_runs_code_in_cwd_with_files_and_keeps_state(table: Path) -> None:
    async with KernelEnvironment(EnvConfig(kernels=1)) as env:
        async with env.episode([table]) as episode:
            assert [f.name for f in episode.files] == ["sales.csv"]
            load = "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df['amount'].sum())"
            first = await episode.step(TURN.format(code=load))
            assert first.status == "ok" and first.feedback == "42\n"
            second = await episode.step(TURN.format(code="print(len(df))"))
            assert second.feedback == "2\n"
            assert episode.stats.executions == 2 and episode.stats.kernel_time > 0


async def test_turn_without_code_runs_nothing() -> None:
    async with KernelEnvironment(EnvConfig(kernels=1)) as env:
        async with env.episode() as episode:
            result = await episode.step("<Analyze>I think first.</Analyze>")
            assert not result.executed and episode.stats.executions == 0


async def test_stateless_mode_clears_namespace_before_each_block_but_keeps_cwd(table: Path) -> None:
    async with KernelEnvironment(EnvConfig(kernels=1, stateless=True)) as env:
        async with env.episode([table]) as episode:
            await episode.step(TURN.format(code="x = 41"))
            lost = await episode.step(TURN.format(code="print(x + 1)"))
            assert lost.status == "error"
            assert lost.feedback == (
                "[Error]:\nTraceback (most recent call last):\n"
                '  File "<string>", line 1, in <module>\n    print(x + 1)\n'
                "NameError: name 'x' is not defined"
            )
            cwd = await episode.step(TURN.format(code="print(open('sales.csv').readline().strip())"))
            assert cwd.feedback == "region,amount\n"


async def test_timeout_interrupts_the_block_and_the_kernel_stays_usable() -> None:
    async with KernelEnvironment(EnvConfig(kernels=1, execution_timeout=1.0)) as env:
        async with env.episode() as episode:
            slow = await episode.step(TURN.format(code="import time\nprint('start')\ntime.sleep(30)"))
            assert slow.status == "timeout"
            assert slow.feedback == "start\n[Timeout]: execution exceeded 1 seconds"
            assert slow.duration < 10
            after = await episode.step(TURN.format(code="print('alive')"))
            assert after.feedback == "alive\n"
            assert episode.stats.timeouts == 1


async def test_namespace_is_reset_between_episodes(table: Path) -> None:
    async with KernelEnvironment(EnvConfig(kernels=1)) as env:
        async with env.episode([table], name="first") as episode:
            await episode.step(TURN.format(code="secret = 7"))
            first_dir = episode.workdir
        async with env.episode([], name="second") as episode:
            look = f"import os\nprint('secret' in dir(), os.getcwd() == {str(episode.workdir)!r})"
            result = await episode.step(TURN.format(code=look))
            assert result.feedback == "False True\n"
            assert not first_dir.exists()


async def test_dead_kernel_ends_the_episode_and_the_pool_replaces_it() -> None:
    async with KernelEnvironment(EnvConfig(kernels=1)) as env:
        async with env.episode() as episode:
            died = await episode.step(TURN.format(code="import os\nos._exit(1)"))
            assert died.status == "dead" and died.feedback.startswith("[Error]:")
            again = await episode.step(TURN.format(code="print(1)"))
            assert again.status == "dead" and episode.stats.kernel_died
        async with env.episode() as episode:
            fresh = await episode.step(TURN.format(code="print('fresh')"))
            assert fresh.feedback == "fresh\n"


def test_observation_text_wraps_feedback_in_execute_tags() -> None:
    assert observation_text("1\n") == "\n<Execute>\n1\n\n</Execute>\n"


def test_environment_thread_serves_synchronous_callers(table: Path) -> None:
    async def run(env: KernelEnvironment) -> str | None:
        async with env.episode([table]) as episode:
            return (await episode.step(TURN.format(code="print(sum(range(4)))"))).feedback

    with EnvironmentThread(EnvConfig(kernels=1)) as thread:
        assert thread.run(run) == "6\n"
        assert thread.run(run) == "6\n"


async def test_the_reference_environment_runs_blocks_with_fresh_globals_and_its_text(table: Path) -> None:
    async with KernelEnvironment(EnvConfig(kernels=1, parity=True, execution_timeout=10)) as env:
        async with env.episode([table]) as episode:
            code = "import sys\nx = 41\nprint('out')\nprint('err', file=sys.stderr)\nx"
            first = await episode.step(TURN.format(code=code))
            assert (first.status, first.feedback) == ("ok", "out\nerr\n")  # no trailing value
            code = "print('lost')\nimport sys\nprint('why', file=sys.stderr)\nprint(x)"
            lost = await episode.step(TURN.format(code=code))
            assert lost.status == "error"
            assert lost.feedback == (
                "[Error]:\nTraceback (most recent call last):\n"
                '  File "<string>", line 4, in <module>\n    print(x)\n'
                "NameError: name 'x' is not defined\nwhy"
            )
            cwd = await episode.step(TURN.format(code="print(open('sales.csv').readline().strip())"))
            assert cwd.feedback == "region,amount\n"
