"""Training DeepAnalyze: synthesis, SFT stages and GRPO with live-kernel rollouts (see README.md).

Importable from the repository root; not shipped in the wheel. The environment is the
core's ``KernelExecutor`` and ``protocol``, so training sees what serving sees.
"""
