"""Generation backends for rollouts: one ``GenerateFn`` surface, three engines.

Owns ``HFGenerate`` (``transformers`` ``generate``, batched with left padding; what CPU
runs use), ``VLLMColocateGenerate`` (the vLLM engine TRL keeps on each training GPU)
and ``VLLMServerGenerate`` (a ``trl vllm-serve`` server on its own node). Each continues
token contexts by one turn, stopping after ``</Code>`` or EOS, and returns the sampled
tokens with their sampling logprobs (``log_softmax(logits / temperature)``, the same
quantity TRL computes for the policy).

Must not know about episodes, kernels or rewards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .episode import Generation


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings of rollouts."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive for sampling, got {self.temperature}")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """``</Code>`` and EOS: every turn ends after one of them."""
    return [tokenizer.convert_tokens_to_ids("</Code>"), tokenizer.eos_token_id]


class HFGenerate:
    """``model.generate`` on whatever device the model is on (CPU or one GPU).

    ``model_context`` yields the model to generate with; trainers pass TRL's
    ``unwrap_model_for_generation`` so DDP/ZeRO-3 wrapped models work.
    """

    def __init__(
        self,
        model_context: Callable[[], Any],
        tokenizer: Any,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        batch_size: int = 8,
    ) -> None:
        self.model_context = model_context
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.batch_size = batch_size
        self.stop_ids = stop_token_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        import torch

        results: list[Generation] = []
        with self.model_context() as model, torch.no_grad():
            for start in range(0, len(contexts), self.batch_size):
                chunk = contexts[start : start + self.batch_size]
                limits = max_new_tokens[start : start + self.batch_size]
                results.extend(self._generate(model, chunk, limits))
        return results

    def _generate(self, model: Any, contexts: Sequence[Sequence[int]], limits: Sequence[int]) -> list[Generation]:
        import torch

        device = next(model.parameters()).device
        width = max(len(c) for c in contexts)
        input_ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(contexts), width), dtype=torch.long)
        for row, context in enumerate(contexts):
            input_ids[row, width - len(context) :] = torch.tensor(list(context), dtype=torch.long)
            attention[row, width - len(context) :] = 1
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max(limits),
            do_sample=True,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            top_k=self.sampling.top_k,  # 0 disables top-k (None would mean the model's default)
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        new_tokens = output.sequences[:, width:].cpu()
        logits = torch.stack(output.logits, dim=1).float().cpu()  # (batch, steps, vocab)
        logprobs = torch.log_softmax(logits / self.sampling.temperature, dim=-1)
        chosen = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        generations = []
        for row, limit in enumerate(limits):
            tokens = new_tokens[row].tolist()[:limit]
            end = next((i + 1 for i, t in enumerate(tokens) if t in self.stop_ids), len(tokens))
            generations.append(Generation(tokens[:end], chosen[row, :end].tolist()))
        return generations


class VLLMColocateGenerate:
    """The vLLM engine TRL colocates with training (``use_vllm=True, vllm_mode="colocate"``).

    Each process generates for its own episodes (tensor parallel size 1), so episodes
    may finish at different turns on different ranks without a collective call.
    """

    def __init__(self, llm: Any, tokenizer: Any, sampling: SamplingConfig = SamplingConfig()) -> None:
        self.llm = llm
        self.sampling = sampling
        self.stop_ids = stop_token_ids(tokenizer)

    def __call__(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                n=1,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k or -1,
                max_tokens=limit,
                stop_token_ids=self.stop_ids,
                logprobs=0,
                skip_special_tokens=False,
            )
            for limit in max_new_tokens
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(c)) for c in contexts]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            tokens = list(completion.token_ids)
            logprobs = [
                float(step[token].logprob) if step and token in step else 0.0
                for token, step in zip(tokens, completion.logprobs or [None] * len(tokens), strict=False)
            ]
            generations.append(Generation(tokens, logprobs))
        return generations


class VLLMServerGenerate:
    """A ``trl vllm-serve`` server; every process sends its own requests (no collective)."""

    def __init__(
        self,
        tokenizer: Any,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        base_url: str | None = None,
        host: str = "0.0.0.0",
        port: int = 8000,
        timeout: float = 240.0,
    ) -> None:
        from trl.generation.vllm_client import VLLMClient

        self.client = VLLMClient(base_url=base_url, host=host, server_port=port, connection_timeout=timeout)
        self.sampling = sampling
        self.stop_ids = stop_token_ids(tokenizer)

    def __call__(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        generations = []
        # The server takes one max_tokens per request: group contexts by their limit.
        for limit in sorted(set(max_new_tokens)):
            indices = [i for i, m in enumerate(max_new_tokens) if m == limit]
            output = self.client.generate(
                prompts=[list(contexts[i]) for i in indices],
                n=1,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                top_k=self.sampling.top_k,
                max_tokens=limit,
                logprobs=0,
                generation_kwargs={"stop_token_ids": self.stop_ids, "skip_special_tokens": False},
            )
            for position, index in enumerate(indices):
                tokens = list(output["completion_ids"][position])
                logprobs = [float(step[0]) if step else 0.0 for step in output["logprobs"][position]]
                generations.append((index, Generation(tokens, logprobs)))
        return [g for _, g in sorted(generations, key=lambda pair: pair[0])]
