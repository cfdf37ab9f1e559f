"""Where a pooled task's folder lives and how its files get there.

Owns the two kinds of task folders a ``KernelPool`` uses:

- ``LocalFolders``: folders on this machine's filesystem, the inputs copied in; for local
  kernels, and for kernels on a gateway that see the same path (a shared filesystem).
- ``KernelFolders``: folders the kernel creates in its own temporary directory, for
  kernels on another machine; the inputs are shipped through the kernel's own
  connection in chunks (base64 in silent executions), each file checked against its
  SHA-256 once written, a task's files bounded by a size limit.

Both end a task with the kernel back in its home folder and the task's folder removed,
and can first copy what the folder holds back to this machine (``collect``: the
report's run folder).

Must not leave names in the kernel's namespace or move its execution count, and must not
start or reset kernels (the pool does).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Protocol

from ..protocol import DataFile
from ..workspace import NOT_COPIED, describe_files, input_files, list_data_files, stage_inputs
from . import ExecutionFailure
from .kernel import KernelExecutor

CHUNK_BYTES = 1 << 20
"""Bytes of a file sent per silent execution (base64 makes the message a third larger)."""
MAX_SHIPPED_BYTES = 512 << 20
"""Default limit on one task's files shipped through a kernel."""
CALL_TIMEOUT = 60.0
"""Seconds one kernel-side file operation may take."""


class ShippingError(ExecutionFailure):
    """A task's files could not be put in its folder on the kernel's side."""


class TaskFolders(Protocol):
    """Makes a task's folder (with its inputs) for a kernel and removes it afterwards."""

    local: bool
    """Whether the folders are readable on this machine."""

    async def create(
        self, executor: KernelExecutor, inputs: Iterable[str | Path], name: str
    ) -> tuple[PurePath, list[DataFile]]: ...

    async def remove(self, executor: KernelExecutor | None, workdir: PurePath) -> None: ...

    async def collect(self, executor: KernelExecutor, workdir: PurePath, into: Path) -> None:
        """Copy the files in ``workdir`` (hidden ones left out) into ``into`` on this machine."""

    def close(self) -> None: ...


async def silent(executor: KernelExecutor, code: str) -> None:
    """Run bookkeeping code in the kernel; a failure is an ``ExecutionFailure``."""
    reply = await executor.execute_silent(code)
    if reply.get("status") != "ok":
        raise ExecutionFailure(
            f"kernel bookkeeping failed: {reply.get('ename', '')}: {reply.get('evalue', '')}"
        )


def chdir_code(path: PurePath | str) -> str:
    return f"import os as _da_os\n_da_os.chdir({str(path)!r})\ndel _da_os\n"


class LocalFolders:
    """Task folders under ``root`` on this machine (and, for a shared filesystem, the kernel's).

    Without ``root`` they go in a new temporary folder (inside ``parent`` when given, e.g.
    a shared filesystem), removed with the pool.
    """

    local = True

    def __init__(self, root: str | Path | None = None, *, parent: str | Path | None = None) -> None:
        self._owns_root = root is None
        if root is None:
            if parent is not None:
                Path(parent).mkdir(parents=True, exist_ok=True)
            root = tempfile.mkdtemp(prefix="deepanalyze-pool-", dir=parent)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    async def create(
        self, executor: KernelExecutor, inputs: Iterable[str | Path], name: str
    ) -> tuple[PurePath, list[DataFile]]:
        workdir = self.root / name
        if workdir.exists():
            shutil.rmtree(workdir)
        names = stage_inputs(inputs, workdir)
        await silent(executor, chdir_code(workdir))
        return workdir, list_data_files(workdir, names)

    async def remove(self, executor: KernelExecutor | None, workdir: PurePath) -> None:
        if executor is not None:
            await silent(executor, chdir_code(self.root))
        shutil.rmtree(Path(workdir), ignore_errors=True)

    async def collect(self, executor: KernelExecutor, workdir: PurePath, into: Path) -> None:
        if Path(workdir).resolve() != into.resolve():
            shutil.copytree(workdir, into, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*NOT_COPIED))

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


# Run in the kernel with exec() in a dict of its own: nothing reaches the user namespace.
_KERNEL_SIDE = '''
import base64, hashlib, os, shutil, tempfile

def make_folder(prefix):
    folder = tempfile.mkdtemp(prefix=prefix)
    os.chdir(folder)
    return folder

def _target(folder, name):
    path = os.path.normpath(os.path.join(folder, name))
    if os.path.commonpath([folder, path]) != os.path.normpath(folder):
        raise ValueError("a file outside the task folder: " + name)
    return path

def write_chunk(folder, name, offset, data):
    path = _target(folder, name)
    if offset == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "r+b" if offset else "wb") as file:
        file.seek(offset)
        file.write(base64.b64decode(data))
    return True

def digest(folder, name):
    path = _target(folder, name)
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return [os.path.getsize(path), sha.hexdigest()]

def list_files(folder, skipped):
    import fnmatch
    keep = lambda name: not any(fnmatch.fnmatch(name, pattern) for pattern in skipped)
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if keep(d))
        for name in sorted(f for f in files if keep(f)):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append([os.path.relpath(path, folder).replace(os.sep, "/"), os.path.getsize(path)])
    return found

def read_chunk(folder, name, offset, size):
    with open(_target(folder, name), "rb") as file:
        file.seek(offset)
        return base64.b64encode(file.read(size)).decode("ascii")

def remove_folder(folder):
    os.chdir(os.path.dirname(os.path.normpath(folder)))
    shutil.rmtree(folder, ignore_errors=True)
    return True
'''


async def call_in_kernel(executor: KernelExecutor, function: str, *args: Any) -> Any:
    """``function(*args)`` of the kernel-side file helpers, evaluated silently in the kernel."""
    expression = (
        f"(lambda scope: (exec({_KERNEL_SIDE!r}, scope), scope[{function!r}](*{args!r}))[1])"
        "({'__name__': '_deepanalyze_files'})"
    )
    reply = await executor.execute_silent("", {"result": expression}, timeout=CALL_TIMEOUT)
    answer = (reply.get("user_expressions") or {}).get("result") or {}
    if answer.get("status") != "ok":
        raise ShippingError(
            f"the kernel could not {function.replace('_', ' ')}: "
            f"{answer.get('ename', reply.get('ename', 'Error'))}: {answer.get('evalue', reply.get('evalue', ''))}"
        )
    return ast.literal_eval(answer["data"]["text/plain"])


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


class KernelFolders:
    """Task folders made by the kernel in its own temporary directory, files shipped through it."""

    local = False

    def __init__(self, max_bytes: int = MAX_SHIPPED_BYTES) -> None:
        self.max_bytes = max_bytes

    async def create(
        self, executor: KernelExecutor, inputs: Iterable[str | Path], name: str
    ) -> tuple[PurePath, list[DataFile]]:
        files = input_files(inputs)
        total = sum(f.size for f in files)
        if total > self.max_bytes:
            raise ShippingError(
                f"the task's files are {_megabytes(total)}, over the {_megabytes(self.max_bytes)} "
                "shipped through a kernel; point DeepAnalyze.shared_workdir at a folder the "
                "gateway's kernels also see, or raise the limit"
            )
        prefix = "deepanalyze-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] + "-"
        folder = str(await call_in_kernel(executor, "make_folder", prefix))
        try:
            for file in files:
                await self._ship(executor, folder, file.source, file.name)
        except BaseException:
            await self.remove(executor, PurePosixPath(folder))
            raise
        return PurePosixPath(folder), describe_files(DataFile(f.name, f.size) for f in files)

    async def _ship(self, executor: KernelExecutor, folder: str, source: Path, name: str) -> None:
        sha = hashlib.sha256()
        size = 0
        with source.open("rb") as stream:
            while True:
                chunk = stream.read(CHUNK_BYTES)
                if not chunk and size > 0:
                    break
                sha.update(chunk)
                data = base64.b64encode(chunk).decode("ascii")
                await call_in_kernel(executor, "write_chunk", folder, name, size, data)
                size += len(chunk)
                if not chunk:  # an empty file: created, nothing more to send
                    break
        arrived_size, arrived_sha = await call_in_kernel(executor, "digest", folder, name)
        if (arrived_size, arrived_sha) != (size, sha.hexdigest()):
            raise ShippingError(
                f"{name} arrived damaged in the kernel's folder ({arrived_size} of {size} bytes, "
                "checksum mismatch)"
            )

    async def remove(self, executor: KernelExecutor | None, workdir: PurePath) -> None:
        if executor is not None:
            await call_in_kernel(executor, "remove_folder", str(workdir))

    async def collect(self, executor: KernelExecutor, workdir: PurePath, into: Path) -> None:
        folder = str(workdir)
        files = await call_in_kernel(executor, "list_files", folder, list(NOT_COPIED))
        total = sum(size for _, size in files)
        if total > self.max_bytes:
            raise ShippingError(
                f"the run's folder holds {_megabytes(total)}, over the {_megabytes(self.max_bytes)} "
                "copied back through a kernel"
            )
        root = into.resolve()
        for name, size in files:
            target = into / name
            # The listing comes from a kernel the model's code ran in: trust no name.
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or not (
                target.resolve().is_relative_to(root)
            ):
                raise ShippingError(f"the kernel listed a file outside the run's folder: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as stream:
                for offset in range(0, size, CHUNK_BYTES):
                    data = await call_in_kernel(executor, "read_chunk", folder, name, offset, CHUNK_BYTES)
                    chunk = base64.b64decode(data)
                    sha.update(chunk)
                    stream.write(chunk)
            expected_size, expected_sha = await call_in_kernel(executor, "digest", folder, name)
            if (partial.stat().st_size, sha.hexdigest()) != (expected_size, expected_sha):
                partial.unlink()
                raise ShippingError(f"{name} arrived damaged from the kernel's folder (checksum mismatch)")
            partial.replace(target)

    def close(self) -> None:
        pass
