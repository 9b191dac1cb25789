"""Model configuration of nanogpt2: GPT-2's architecture under GPT-2's field names.

This file is copied to the Hub next to the weights, so it imports only transformers.
"""

from transformers import PretrainedConfig


class NanoGPT2Config(PretrainedConfig):
    """Configuration of a GPT-2 style decoder (defaults: GPT-2 small, 124M parameters).

    Args:
        vocab_size: rows of the token embedding (and columns of the tied output layer). May be padded
            above the tokenizer's size (50304 = 64 * 786 for GPT-2's 50257 tokens) so that the largest
            matrix multiply has friendly shapes; the padded ids are never predicted.
        n_positions: longest sequence the learned position embedding covers.
        n_embd: width of the residual stream.
        n_layer: number of transformer blocks.
        n_head: attention heads per block; `n_embd` must be divisible by it.
        n_inner: width of the MLP's hidden layer; `None` means `4 * n_embd`.
        activation_function: the MLP's GELU: `"gelu_new"`, GPT-2's tanh approximation, or `"gelu"`, the
            exact (erf) one that nanoGPT's models use (transformers' names for the two).
        layer_norm_epsilon: epsilon of every LayerNorm.
        initializer_range: standard deviation of the normal initialisation of weights.
        embd_pdrop, attn_pdrop, resid_pdrop: dropout on embeddings, attention probabilities and
            residual branches. GPT-2 used 0.1; pretraining at this scale works best with 0.
        tokenizer_vocab_size: number of ids the tokenizer can produce; `None` means `vocab_size`.
            Logits of ids at or above it are set to -inf, so they are never sampled nor predicted.
        use_cache: whether `forward` returns a KV cache by default in inference.
    """

    model_type = "nanogpt2"
    keys_to_ignore_at_inference = ["cache"]
    # Standard names used by transformers utilities (DynamicCache(config=...), generation, pipelines).
    attribute_map = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,
        activation_function: str = "gelu_new",
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        embd_pdrop: float = 0.0,
        attn_pdrop: float = 0.0,
        resid_pdrop: float = 0.0,
        tokenizer_vocab_size: int | None = None,
        use_cache: bool = True,
        bos_token_id: int = 50256,
        eos_token_id: int = 50256,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        if tokenizer_vocab_size is not None and not 0 < tokenizer_vocab_size <= vocab_size:
            raise ValueError(
                f"tokenizer_vocab_size ({tokenizer_vocab_size}) must be in 1..vocab_size ({vocab_size})"
            )
        if activation_function not in ("gelu_new", "gelu"):
            raise ValueError(f"activation_function must be 'gelu_new' or 'gelu', got {activation_function!r}")
        for name, p in (("embd_pdrop", embd_pdrop), ("attn_pdrop", attn_pdrop), ("resid_pdrop", resid_pdrop)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.resid_pdrop = resid_pdrop
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.use_cache = use_cache
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def num_real_tokens(self) -> int:
        """Ids the model may predict: the tokenizer's vocabulary, without the padding rows."""
        return self.tokenizer_vocab_size or self.vocab_size
