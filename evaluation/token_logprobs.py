"""Log-probabilities of chosen tokens from a causal LM's final hidden states, logits never stored whole.

Scoring a token needs logit(target) - logsumexp(logits) at its position. Asking the model for the
(N, vocab) logits and then taking logsumexp writes N x vocab floats to memory and reads them back
(0.64 GB for 3,200 positions at GPT-2's vocabulary). `OutputLayer` instead runs the model's body for
the hidden states and applies the output layer tile by tile, (rows x vocabulary block), reducing each
tile to a per-row maximum and sum of exponentials while it is still in cache; the target logits are
separate dot products. Same arithmetic, same result within float rounding (an online logsumexp).

It applies only where that decomposition reproduces the model's own logits, which `OutputLayer.of`
checks on a probe: a body reachable as `model.base_model`, whose first output is the hidden state the
output layer (`get_output_embeddings()`, a plain `nn.Linear`) is applied to, with no final transform
such as soft-capping or scaling. A vocabulary padded with -inf logits (nanogpt2's) is cut to the
real tokens. Any other model keeps the logits path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class OutputLayer:
    """A model's body and output layer, applied separately. Build it with `OutputLayer.of(...)`."""

    # CPU: a 1024 x 1024 fp32 tile (4 MB, half of it per core) stays in L2 through the reductions:
    # 1.6x (width 256) and 1.15x (width 768) faster than logits-then-logsumexp at GPT-2's vocabulary
    # (benchmarks/bench_output_layer.py). GPU: whole rows of logits, 2048 rows at a time.
    cpu_tile = (1024, 1024)  # (rows, vocabulary entries)
    gpu_rows_per_tile = 2048

    def __init__(self, body: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor | None):
        self.body = body
        self.weight = weight  # (V, C): real tokens only
        self.bias = bias  # (V,) or None
        on_cpu = weight.device.type == "cpu"
        self.rows_per_tile, self.vocab_per_tile = self.cpu_tile if on_cpu else (self.gpu_rows_per_tile, weight.shape[0])

    @classmethod
    def of(cls, model: torch.nn.Module, device: torch.device, extra: dict[str, Any]) -> OutputLayer | None:
        """The decomposition of `model`, or None where it would not reproduce the model's logits
        (checked on a 3-token probe, in the precision the model runs in)."""
        body = getattr(model, "base_model", None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if body is None or body is model or type(head) is not torch.nn.Linear:
            return None
        probe = torch.tensor([[1, 2, 3]], device=device)
        try:
            want = output_tensor(model(input_ids=probe, **extra)).float()  # (1, 3, V_padded)
            hidden = output_tensor(body(input_ids=probe, **extra))  # (1, 3, C)
            got = F.linear(hidden, head.weight, head.bias).float()
        except (AttributeError, IndexError, RuntimeError, TypeError, ValueError):
            return None
        if got.shape != want.shape:
            return None
        # A padded vocabulary: real tokens first, the padding -inf at every position.
        real = torch.isfinite(want).all(dim=(0, 1))  # (V,)
        n_real = int(real.sum())
        if n_real == 0 or not real[:n_real].all() or not (want[..., n_real:] == float("-inf")).all():
            return None
        want, got = want[..., :n_real], got[..., :n_real]
        # Rounding only: 1e-4 of the logits' scale in fp32, bf16's 2^-7 under autocast or in bf16 weights.
        low_precision = torch.is_autocast_enabled(device.type) or head.weight.dtype != torch.float32
        tolerance = (1e-2 if low_precision else 1e-4) * max(1.0, want.abs().max().item())
        if not bool((got - want).abs().max() <= tolerance):
            return None
        bias = None if head.bias is None else head.bias[:n_real]
        return cls(body, head.weight[:n_real], bias)

    def hidden_states(self, **inputs: Any) -> torch.Tensor:
        """The body's final hidden states (B, T, C) for the model's usual keyword inputs."""
        return output_tensor(self.body(**inputs))

    def token_logprobs(self, hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(targets[i] | position rows[i]), float32 (M,), from `hidden` (N, C) of N positions."""
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.weight.dtype
        with torch.autocast(device, enabled=False):  # the casts autocast would make, made once
            hidden, weight = hidden.to(dtype), self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            normaliser = self._log_normaliser(hidden, weight, bias)  # (N,)
            # Target logits: one dot product each, (M, 1, C) @ (M, C, 1).
            chosen = weight[targets]  # (M, C)
            target_logits = torch.bmm(hidden[rows][:, None, :], chosen[:, :, None]).view(-1)  # (M,)
            if bias is not None:
                target_logits = target_logits + bias[targets]
            return target_logits.float() - normaliser[rows]

    def _log_normaliser(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """logsumexp over the vocabulary of hidden @ weight.T + bias, float32 (N,)."""
        n_rows, n_vocab = self.rows_per_tile, self.vocab_per_tile
        buffer = torch.empty(min(n_rows, hidden.shape[0]) * n_vocab, dtype=hidden.dtype, device=hidden.device)
        out = []
        for block in hidden.split(n_rows):  # (R, C)
            peaks, sums = [], []  # per vocabulary block: (R, 1) row maxima and sums of exp(logit - max)
            for v0 in range(0, weight.shape[0], n_vocab):
                w = weight[v0 : v0 + n_vocab]  # (Vb, C)
                tile = buffer[: block.shape[0] * w.shape[0]].view(block.shape[0], w.shape[0])  # (R, Vb)
                if bias is None:
                    torch.mm(block, w.T, out=tile)
                else:
                    torch.addmm(bias[v0 : v0 + n_vocab], block, w.T, out=tile)
                tile = tile.float()  # a copy for bf16, the buffer itself for fp32: reductions in fp32
                peak = tile.amax(dim=1, keepdim=True)
                peaks.append(peak)
                sums.append(tile.sub_(peak).exp_().sum(dim=1, keepdim=True))
            # Combine the blocks: logsumexp_j(peak_j + log sum_j).
            out.append(torch.logsumexp(torch.cat(peaks, 1) + torch.cat(sums, 1).log(), dim=1))
        return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def output_tensor(output: Any) -> torch.Tensor:
    """The logits of a causal LM's output, or the last hidden state of a body's (a ModelOutput or a
    tuple: its first element)."""
    for name in ("logits", "last_hidden_state"):
        if hasattr(output, name):
            return getattr(output, name)
    return output[0]
