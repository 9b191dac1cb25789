"""nanogpt2.quickstart: the embedded, offline end-to-end run (`nanogpt2 quickstart [--chat]`).

`pipeline.run_quickstart(Options(...))` runs the stages; `corpus` writes Python's own documentation as a
corpus, `tokenizer` chooses GPT-2's tokenizer or trains one, `reload` loads the final model in a fresh
process; with `--chat`, `chat_corpus` turns the documentation into questions and answers and `chat` runs
the fine-tune on them. Nothing is imported here, so `python -m nanogpt2.quickstart.reload` loads no
nanogpt2 code.
"""
