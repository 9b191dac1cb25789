#!/usr/bin/env bash
# The one short GPU check of issue #13, for a lent device (one H100 / H200), in under ~10 minutes:
#   1. GPT-2 124M (configs/gpt2-124m.yaml) on one GPU at bf16 + torch.compile: tokens/s and MFU from
#      `nanogpt2 throughput` (goal: >= 45% MFU).
#   2. GPT-2 XL (configs/gpt2-1558m.yaml) through Accelerate FSDP2 (configs/accelerate/fsdp-8gpu.yaml at
#      world size 1, which still takes the sharded code path): a few steps, a checkpoint and final/;
#      fails unless the loop's log line names FSDP2 (no silent DDP / single-process fallback).
# Data comes from the package itself (Python's documentation, the quickstart corpus) and a tokenizer trained
# on it: no Hub. The models keep their 50,304 embedding rows, so FLOPs per token are GPT-2's.
#
#   bash benchmarks/device_check.sh [RESULTS_DIR]        # default: $OUT, else /tmp/device_check
#   DEVICE_CHECK_SMOKE=1 bash benchmarks/device_check.sh   # the same plumbing on a CPU with tiny models
#
# Where the package is not installed (a bare device image: torch, accelerate, transformers are there;
# datasets, omegaconf and this package are not), wheels carried in .whl/ are installed to /tmp/site first.
# RESULTS_DIR gets the logs, both runs' metrics.jsonl and summary.txt; the runs themselves (checkpoints,
# final/: tens of GB for the 1558M) stay in $WORK_DIR (default /tmp/device_check_work).
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=${1:-${OUT:-/tmp/device_check}}
WORK=${WORK_DIR:-/tmp/device_check_work}
SMOKE=${DEVICE_CHECK_SMOKE:-0}
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled PYTHONUNBUFFERED=1
mkdir -p "$RESULTS" "$WORK"
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"
note() { echo "== $*" | tee -a "$SUMMARY"; }

if ! "$PY" -c "import nanogpt2.training" 2>/dev/null; then
    note "installing the package and .whl/ wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$SUMMARY" 2>/dev/null || true
"$PY" -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)" \
    | tee -a "$SUMMARY"

# Shared knobs: no HellaSwag (Hub data), one short evaluation and checkpoint at the last step.
COMMON=(eval.hellaswag=false eval.num_samples=1 eval.max_new_tokens=16 eval.every=100000
        checkpoint.every=100000 logging.tracker=none resume=none)
if [[ $SMOKE == 1 ]]; then
    CORPUS_CHARS=400000 VOCAB=1024 VAL_TOKENS=8192
    RUN_124M=(model.n_layer=2 model.n_head=2 model.n_embd=64 model.seq_len=64 train.micro_batch_size=4
              train.total_batch_tokens=512 train.max_steps=8 train.warmup_steps=2 train.compile=false
              train.mixed_precision=no eval.val_tokens=512)
    RUN_1558M=(model.n_layer=2 model.n_head=2 model.n_embd=64 model.seq_len=64 train.micro_batch_size=4
               train.total_batch_tokens=512 train.max_steps=3 train.warmup_steps=1 train.compile=false
               train.mixed_precision=no eval.val_tokens=256)
    SKIP=2 FSDP_PROCESSES=2  # CPU processes are sharded by the loop (training/fsdp.py) from 2 processes up
else
    # 124M: micro-batch 64 x 1024, 8 micro-steps of the 524,288-token step; 30 steps, the first 10 left out.
    CORPUS_CHARS=6000000 VOCAB=8192 VAL_TOKENS=131072
    RUN_124M=(train.max_steps=30 train.warmup_steps=10 train.mixed_precision=bf16 eval.val_tokens=65536)
    # 1558M: one micro-step of 8 x 1024 per step (the point is the sharded path, not the recipe's batch);
    # no compile, to keep inside the time box.
    RUN_1558M=(train.micro_batch_size=8 train.total_batch_tokens=8192 train.max_steps=4 train.warmup_steps=1
               train.compile=false train.mixed_precision=bf16 eval.val_tokens=8192)
    SKIP=10 FSDP_PROCESSES=1
fi

# --- data: the built-in corpus, a byte-level BPE trained on it, prepared shards (about a minute) ---
DATA=$WORK/prepared
if [[ ! -f $DATA/meta.json ]]; then
    note "data: built-in corpus ($CORPUS_CHARS characters), tokenizer of $VOCAB ids"
    "$PY" -c "import sys; from nanogpt2.quickstart.corpus import write_builtin_corpus as w; \
w(sys.argv[1], max_chars=int(sys.argv[2]))" "$WORK/corpus.jsonl" "$CORPUS_CHARS"
    nanogpt2 train-tokenizer "$WORK/tokenizer" "$WORK/corpus.jsonl" --vocab-size "$VOCAB" >"$RESULTS/data.log" 2>&1
    nanogpt2 prepare --source "$WORK/corpus.jsonl" --tokenizer "$WORK/tokenizer" --output-dir "$DATA" \
        --val-tokens "$VAL_TOKENS" --num-proc 8 >>"$RESULTS/data.log" 2>&1
fi

# --- 1. GPT-2 124M, one GPU, bf16 + compile ---
note "124M: accelerate launch --config_file configs/accelerate/1gpu.yaml (bf16, compile)"
RUN=$WORK/gpt2-124m
rm -rf "$RUN"
timeout 360 accelerate launch --config_file configs/accelerate/1gpu.yaml scripts/pretrain.py \
    --config configs/gpt2-124m.yaml data.path="$DATA" out_dir="$RUN" "${COMMON[@]}" "${RUN_124M[@]}" \
    >"$RESULTS/gpt2-124m.log" 2>&1 || { note "124M run FAILED (log: gpt2-124m.log)"; tail -30 "$RESULTS/gpt2-124m.log"; exit 1; }
grep -m1 "^training " "$RESULTS/gpt2-124m.log" | tee -a "$SUMMARY"
cp "$RUN/metrics.jsonl" "$RESULTS/gpt2-124m-metrics.jsonl"
nanogpt2 throughput "$RUN" --skip "$SKIP" | tee -a "$SUMMARY"

# --- 2. GPT-2 XL through Accelerate FSDP2, world size 1 ---
note "1558M: accelerate launch --config_file configs/accelerate/fsdp-8gpu.yaml --num_processes $FSDP_PROCESSES"
RUN=$WORK/gpt2-1558m
rm -rf "$RUN" "$WORK/gpt2-124m"  # the 124M's checkpoint and final/ are no longer needed: free the disk
timeout 420 accelerate launch --config_file configs/accelerate/fsdp-8gpu.yaml --num_processes "$FSDP_PROCESSES" scripts/pretrain.py \
    --config configs/gpt2-1558m.yaml data.path="$DATA" out_dir="$RUN" "${COMMON[@]}" "${RUN_1558M[@]}" \
    >"$RESULTS/gpt2-1558m-fsdp.log" 2>&1 || { note "1558M FSDP run FAILED (log: gpt2-1558m-fsdp.log)"; tail -30 "$RESULTS/gpt2-1558m-fsdp.log"; exit 1; }
LINE=$(grep -m1 "^training " "$RESULTS/gpt2-1558m-fsdp.log")
echo "$LINE" | tee -a "$SUMMARY"
cp "$RUN/metrics.jsonl" "$RESULTS/gpt2-1558m-metrics.jsonl"
nanogpt2 throughput "$RUN" --skip 1 | tee -a "$SUMMARY"
ls "$RUN/final" | tee -a "$SUMMARY"
if [[ $LINE != *"process(es) (FSDP, fsdp_version 2"* ]]; then
    note "FAILED: the 1558M run is not sharded with FSDP2 (a fallback)"
    exit 1
fi
note "device check passed"
