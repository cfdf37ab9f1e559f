#!/usr/bin/env python3
"""A stand-in for the `vllm` command (tests of the managed-vLLM lifecycle; CI has no GPU).

``vllm serve MODEL --host H --port P --served-model-name NAME [...]`` serves the scripted
OpenAI-compatible model of ``scripted_llm.py`` on H:P. ``FAKE_VLLM_MODE`` makes it fail
the ways the real one does: ``oom`` and ``nogpu`` print vLLM's messages and exit 1,
``hang`` never becomes ready. Its argv is written to ``FAKE_VLLM_ARGV`` when set.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted_llm import ScriptedLLM  # noqa: E402


def option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


def main() -> None:
    args = sys.argv[1:]
    if os.environ.get("FAKE_VLLM_ARGV"):
        Path(os.environ["FAKE_VLLM_ARGV"]).write_text(json.dumps(args))
    if not args or args[0] != "serve":
        print("usage: vllm serve MODEL", file=sys.stderr)
        sys.exit(2)
    print(f"INFO vllm serve {args[1]} (fake)", flush=True)
    mode = os.environ.get("FAKE_VLLM_MODE", "")
    if mode == "oom":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    if mode == "nogpu":
        print("RuntimeError: Failed to infer device type", flush=True)
        sys.exit(1)
    if mode == "hang":
        time.sleep(3600)
    turns = json.loads(os.environ.get("FAKE_VLLM_TURNS", "[]"))
    host, port = option(args, "--host", "127.0.0.1"), int(option(args, "--port", "8000"))
    ScriptedLLM(turns, model=option(args, "--served-model-name", args[1]), host=host, port=port).serve_forever()

if __name__ == "__main__":
    main()
