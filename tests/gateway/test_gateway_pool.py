"""KernelPool on a real Jupyter Kernel Gateway: task folders on the kernel's side, files shipped
through the kernel (or a shared folder), namespaces reset, dead kernels replaced."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest

from jupyter_deepanalyze.execution import DeadKernelError
from jupyter_deepanalyze.execution.pool import KernelPool
from jupyter_deepanalyze.execution.task_folders import ShippingError

from ..conftest import RunningGateway


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_task_files_are_shipped_into_a_folder_on_the_kernels_side(
    kernel_gateway: RunningGateway, simpson_csv: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "nested").mkdir(parents=True)
    big = inputs / "nested" / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 12345))  # several chunks, the last one partial
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / ".hidden").write_text("not shipped")
    async with KernelPool(1, gateway=kernel_gateway.endpoint) as pool:
        assert pool.root is None  # nothing is staged on this machine
        async with pool.session([simpson_csv, inputs], name="task-1") as kernel:
            assert not kernel.local
            assert Path(kernel.workdir).is_relative_to(kernel_gateway.kernel_side / "tmp")
            assert [f.name for f in kernel.files] == [
                "Simpson.csv", "inputs/empty.txt", "inputs/nested/big.bin"
            ]
            result = await kernel.executor.execute(
                "import hashlib, os, pandas as pd\n"
                "print(pd.read_csv('Simpson.csv').shape, os.path.getsize('inputs/empty.txt'),"
                " os.path.exists('inputs/.hidden'))\n"
                "print(hashlib.sha256(open('inputs/nested/big.bin', 'rb').read()).hexdigest())"
            )
            assert result.feedback == f"(2000, 5) 0 False\n{_sha(big)}\n"
            assert (await kernel.executor.execute("print(os.getcwd())")).feedback == f"{kernel.workdir}\n"
            workdir = Path(kernel.workdir)
            assert workdir.is_dir()
        assert not workdir.exists()  # removed by the kernel once the task ended
        async with pool.session([], name="task-2") as kernel:
            result = await kernel.executor.execute("print('pd' in dir())")
            assert result.feedback == "False\n"  # the namespace was reset


async def test_files_over_the_shipping_limit_are_refused_with_a_clear_message(
    kernel_gateway: RunningGateway, simpson_csv: Path
) -> None:
    async with KernelPool(1, gateway=kernel_gateway.endpoint, max_shipped_bytes=1000) as pool:
        with pytest.raises(ShippingError, match="over the 0.0 MB shipped through a kernel"):
            async with pool.session([simpson_csv]):
                pass
        async with pool.session([]) as kernel:  # the kernel went back to the pool
            assert (await kernel.executor.execute("print(1)")).feedback == "1\n"


async def test_a_shared_folder_is_used_instead_of_shipping(
    kernel_gateway: RunningGateway, simpson_csv: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    async with KernelPool(1, gateway=kernel_gateway.endpoint, shared_workdir=shared) as pool:
        async with pool.session([simpson_csv], name="task") as kernel:
            workdir = Path(kernel.workdir)
            assert kernel.local and workdir.parent.parent == shared and workdir.name == "task"
            assert (workdir / "Simpson.csv").is_file()
            result = await kernel.executor.execute("import os\nprint(os.getcwd())")
            assert result.feedback == f"{workdir}\n"
        assert not workdir.exists()
    assert list(shared.iterdir()) == []  # the pool's folder in the shared one is gone too


async def test_a_gateway_kernel_that_died_is_replaced(kernel_gateway: RunningGateway) -> None:
    async with KernelPool(1, gateway=kernel_gateway.endpoint) as pool:
        async with pool.session() as kernel:
            pid = int((await kernel.executor.execute("import os\nprint(os.getpid())")).feedback)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(DeadKernelError):
                await kernel.executor.execute("import time\ntime.sleep(60)")
        async with pool.session() as kernel:
            assert (await kernel.executor.execute("print('fresh')")).feedback == "fresh\n"


async def test_collecting_a_task_folder_refuses_names_outside_it(
    kernel_gateway: RunningGateway, tmp_path: Path
) -> None:
    into = tmp_path / "run_files"
    into.mkdir()
    async with KernelPool(1, gateway=kernel_gateway.endpoint) as pool:
        async with pool.session([], name="hostile") as kernel:
            await kernel.executor.execute(
                "import os\nopen('result.txt', 'w').write('kept')\n"
                "open('../escape.txt', 'w').write('no')\n"
                "real_walk = os.walk\n"
                "outside = os.path.abspath('../escape.txt')\n"
                "os.walk = lambda top, **kw: iter([(top, [], ['result.txt', outside])])"
            )
            with pytest.raises(ShippingError, match="outside the run's folder: '../escape.txt'"):
                await pool.folders.collect(kernel.executor, kernel.workdir, into)
            await kernel.executor.execute("os.walk = real_walk")
            await pool.folders.collect(kernel.executor, kernel.workdir, into)
    assert not (tmp_path / "escape.txt").exists()
    assert (into / "result.txt").read_text() == "kept"
