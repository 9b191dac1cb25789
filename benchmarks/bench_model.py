"""Training-step throughput and peak memory: nanogpt2 against transformers' GPT2LMHeadModel.

    python benchmarks/bench_model.py                                  # CPU: a 6-layer, 384-wide GPT-2
    python benchmarks/bench_model.py --preset gpt2-124m --seq-len 1024 --batch-size 16 --bf16 --compile  # CUDA

One training step = forward + backward + AdamW step on a (B, T) batch with next-token targets. Both
models get the identical configuration (dropout 0; transformers' model with its SDPA attention), the
same weights, batch and dtype, and run alternately in the same process, so machine noise hits both.
Prints tokens/s, peak memory (CUDA: max allocated; CPU: peak RSS growth is not separable per model,
so it is omitted) and the ratio. On CUDA, MFU is computed from the device's bf16 peak.
"""

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel, convert_from_hf_gpt2

PRESETS = {
    "cpu-small": dict(n_layer=6, n_head=6, n_embd=384, vocab_size=50257),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257),
}

# Dense bf16 peak FLOP/s by device name fragment (vendor data sheets, without sparsity).
PEAK_BF16_FLOPS = {"H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
                   "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12, "A10G": 70e12}


def device_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def flops_per_token(config: NanoGPT2Config, seq_len: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward + backward of every matmul, embeddings
    included since the output layer is the tied embedding) + attention scores and values, 12·L·C·T."""
    n_params = sum(p.numel() for p in NanoGPT2LMHeadModel(config).parameters())  # meta device: free
    return 6 * n_params + 12 * config.n_layer * config.n_embd * seq_len


def make_models(preset: dict, seq_len: int, device: torch.device):
    torch.manual_seed(0)
    hf_config = GPT2Config(
        n_positions=seq_len, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        attn_implementation="sdpa", **preset,
    )
    hf = GPT2LMHeadModel(hf_config).to(device).train()
    ours = convert_from_hf_gpt2(hf).to(device).train()  # the same weights
    return hf, ours


def train_step_fn(model, optimizer, x, y, use_ours: bool, autocast_dtype):
    def step():
        with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if use_ours:
                loss = model(input_ids=x, shift_labels=y).loss
            else:
                # transformers' documented training call: labels are the inputs, shifted inside.
                loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="cpu-small")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA or CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    preset = PRESETS[args.preset]
    hf, ours = make_models(preset, args.seq_len, device)
    steps = {}
    for name, model in (("transformers GPT2LMHeadModel", hf), ("nanogpt2 NanoGPT2LMHeadModel", ours)):
        # The training loop's optimizer: fused AdamW (a single kernel per step, on CPU as on CUDA).
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        compiled = torch.compile(model) if args.compile else model
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, preset["vocab_size"], (args.batch_size, args.seq_len + 1), generator=g).to(device)
        steps[name] = train_step_fn(compiled, optimizer, x[:, :-1], x[:, 1:], name.startswith("nanogpt2"),
                                    autocast_dtype)

    peak_mem = {}
    for name, step in steps.items():  # warm-up (and compilation), peak memory per model
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            step()
        sync(device)
        if device.type == "cuda":
            peak_mem[name] = torch.cuda.max_memory_allocated(device) / 2**30

    tokens = args.batch_size * args.seq_len * args.steps
    rates = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            rates[name].append(tokens / (time.perf_counter() - t0))

    config = NanoGPT2Config(n_positions=args.seq_len, **preset)
    with torch.device("meta"):
        fpt = flops_per_token(config, args.seq_len)
    peak = device_peak_flops(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; preset {args.preset} {preset}; B={args.batch_size} "
          f"T={args.seq_len}; dtype {'bf16 autocast' if args.bf16 else 'fp32'}; compile={args.compile}")
    median = {}
    for name, r in rates.items():
        median[name] = statistics.median(r)
        line = f"  {name:30s} {median[name]:>12,.0f} tokens/s"
        if name in peak_mem:
            line += f"   peak memory {peak_mem[name]:.2f} GiB"
        if peak:
            line += f"   MFU {median[name] * fpt / peak:.1%}"
        print(line)
    base, new = median.values()
    # Each round times both models back to back, so a per-round ratio cancels slow drifts of the machine.
    paired = [n / b for b, n in zip(*rates.values(), strict=True)]
    print("per-round ratios: " + " ".join(f"{r:.2f}" for r in paired))
    print(f"ratio nanogpt2 / transformers: {new / base:.2f}x (median rates); "
          f"{statistics.median(paired):.2f}x (median of per-round ratios)")


if __name__ == "__main__":
    main()
