"""Published reference results for GPT-2 small, to read a run's numbers against (one place for all).

HellaSwag: `acc_norm` on the 10,042 validation examples in the build-nanogpt / llm.c convention.
Validation loss: FineWeb-Edu validation tokens with GPT-2's tokenizer, so only comparable for runs
on that data and tokenizer. OpenAI published no such loss: the one reference is a reproduction's.
"""

HELLASWAG_CHANCE = 0.25
GPT2_124M_HELLASWAG = 0.2955  # OpenAI's GPT-2 124M checkpoint
GPT3_SMALL_HELLASWAG = 0.337  # GPT-3 Small (125M), Brown et al. 2020, 300B tokens
REPRODUCTION_4090_HELLASWAG = 0.3059  # GPT-2 124M reproduced on 10B FineWeb-Edu tokens (one RTX 4090)
REPRODUCTION_4090_FINEWEB_EDU_VAL_LOSS = 3.028  # the same reproduction's final FineWeb-Edu val loss
