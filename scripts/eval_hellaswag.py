"""Evaluate a causal LM on HellaSwag: prints acc, acc_norm, acc_norm_chars and writes them as JSON.

    python scripts/eval_hellaswag.py --model DIR_OR_HUB_ID [--data PATH] [--style nanogpt|lm-eval] \
        [--limit N] [--batch-size N] [--output FILE] [--mixed-precision bf16] [--compile]
    python scripts/eval_hellaswag.py --model openai-community/gpt2 --output gpt2_hellaswag.json
    accelerate launch --multi_gpu --num_processes 8 scripts/eval_hellaswag.py --model runs/gpt2/final
"""

from nanogpt2.evaluation.hellaswag_cli import main

if __name__ == "__main__":
    main()
