"""Worker for the 2-process HellaSwag test: scores a saved model on a jsonl file under Accelerate.

    torchrun --standalone --nproc_per_node 2 tests/_hellaswag_dist_worker.py MODEL_DIR DATA.jsonl OUT_DIR

Every process writes `OUT_DIR/rank{N}.json` with the metrics and the per-ending scores (packed and plain).
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

import nanogpt2.modeling  # noqa: F401  (registers nanogpt2 with the Auto classes)
from nanogpt2.evaluation import evaluate_hellaswag, load_hellaswag, score_hellaswag


def main(model_dir: str, data_path: str, out_dir: str) -> None:
    # Without cpu=True, Accelerate on a GPU-less machine ignores torchrun's WORLD_SIZE.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(accelerator.device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = load_hellaswag(data_path)
    kwargs = {"style": "nanogpt", "batch_size": 3, "accelerator": accelerator, "progress": False}
    record = {
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "metrics": evaluate_hellaswag(model, tokenizer, examples, **kwargs),
        "packed": score_hellaswag(model, tokenizer, examples, share_context=True, **kwargs).ending_logprobs,
        "plain": score_hellaswag(model, tokenizer, examples, share_context=False, **kwargs).ending_logprobs,
    }
    Path(out_dir, f"rank{accelerator.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
