"""GPT-2 as a transformers model: numerically identical to OpenAI's GPT-2, compact, SDPA attention.

Parameter names follow transformers' `GPT2LMHeadModel` (`transformer.h.0.attn.c_attn.weight`, ...), but
the projections are `nn.Linear` (out, in) instead of GPT-2's `Conv1D` (in, out): conversion is a transpose.

Shapes in comments: B batch, T new tokens, S = past + T key positions, C = n_embd, H heads, D = C / H.

This file is copied to the Hub next to the weights, so it imports only torch, transformers and its
sibling configuration file.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

from .configuration_nanogpt2 import NanoGPT2Config


class NanoGPT2Attention(nn.Module):
    def __init__(self, config: NanoGPT2Config, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.layer_idx = layer_idx  # which layer of the KV cache this attention reads and appends to
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.c_proj.is_residual_projection = True  # scaled at init, see _init_weights
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H, S, D): past keys/values + these
        dropout_p = self.attn_pdrop if self.training else 0.0
        if attn_mask is None:
            # Plain causal attention: the fused flash / memory-efficient kernels apply. Also right for a
            # single new token after a cache (it may see every key), which is_causal would get wrong. A branch,
            # not is_causal=T > 1: under torch.compile with dynamic shapes that is symbolic, and SDPA wants a bool.
            causal = True if T > 1 else False
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class NanoGPT2MLP(nn.Module):
    def __init__(self, config: NanoGPT2Config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        # GPT-2's "gelu_new" is the tanh approximation; "gelu" the exact one (nanoGPT's models).
        self.act = nn.GELU(approximate="none" if config.activation_function == "gelu" else "tanh")
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.c_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class NanoGPT2Block(GradientCheckpointingLayer):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: NanoGPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = NanoGPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = NanoGPT2MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, cache: Cache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, cache)
        return x + self.mlp(self.ln_2(x))


class NanoGPT2PreTrainedModel(PreTrainedModel):
    config_class = NanoGPT2Config
    config: NanoGPT2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["NanoGPT2Block"]
    _can_compile_fullgraph = True

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms, and the two residual
        output projections of each block scaled by 1/sqrt(2 * n_layer) so the residual stream's variance
        does not grow with depth."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                std = std / math.sqrt(2 * self.config.n_layer)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def save_pretrained(self, *args, **kwargs):
        # transformers records only the saved class in `auto_map`; record both, so that AutoModel and
        # AutoModelForCausalLM both load a saved folder with trust_remote_code (the files are the same).
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.NanoGPT2Model",
                "AutoModelForCausalLM": f"{module}.NanoGPT2LMHeadModel",
            }
        return super().save_pretrained(*args, **kwargs)


def _attention_mask(
    attention_mask: torch.Tensor | None, past_length: int, T: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean SDPA mask (B, 1, T, S) from a 2D padding mask (B, S), or None when plain causal
    attention is right (no padding, and no cached prefix unless a single token is being added).

    A 4D mask (B or 1, 1, T, S) is taken as already prepared, as transformers models take it: boolean
    (True = may attend) or additive float. It replaces the causal mask, so it can describe packed
    sequences or several continuations of one shared prefix."""
    if attention_mask is not None and attention_mask.dim() == 4:
        if tuple(attention_mask.shape[-2:]) != (T, past_length + T) or attention_mask.shape[1] != 1:
            raise ValueError(
                f"a 4D attention_mask must have shape (batch, 1, {T}, {past_length + T}) for {T} new tokens "
                f"after {past_length} cached ones, got {tuple(attention_mask.shape)}"
            )
        return attention_mask
    if attention_mask is None or bool(attention_mask.all()):
        if past_length == 0 or T == 1:
            return None
        attention_mask = torch.ones(1, past_length + T, dtype=torch.bool, device=device)
    S = past_length + T
    if attention_mask.shape[-1] != S:
        raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions, expected past + new = {S}")
    key_pos = torch.arange(S, device=device)
    query_pos = torch.arange(past_length, S, device=device)
    causal = key_pos[None, :] <= query_pos[:, None]  # (T, S)
    allowed = causal[None, :, :] & attention_mask.bool()[:, None, :]  # (B, T, S)
    # A padding query (left padding) would otherwise see no key at all, and SDPA turns an all-masked row into
    # NaN, which would then leak through its keys and values in the next layer. Let every query see itself;
    # real tokens never see padding, so their results are unchanged.
    allowed = allowed | (key_pos[None, :] == query_pos[:, None])[None]
    return allowed[:, None, :, :]


class NanoGPT2Model(NanoGPT2PreTrainedModel):
    """The GPT-2 body: embeddings, blocks and final LayerNorm. Returns the last hidden states."""

    def __init__(self, config: NanoGPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(NanoGPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = x.shape
        past_length = cache.get_seq_length() if cache is not None else 0
        n_positions = self.config.n_positions
        if position_ids is None and attention_mask is None:
            if past_length + T > n_positions:
                raise ValueError(f"sequence of {past_length + T} tokens is longer than n_positions={n_positions}")
            position_ids = torch.arange(past_length, past_length + T, device=x.device)[None]
        else:
            if position_ids is None and attention_mask.dim() == 4:
                # A prepared 4D mask says nothing about positions: count on from the cache, as transformers does.
                position_ids = torch.arange(past_length, past_length + T, device=x.device)[None]
            elif position_ids is None:
                # Left padding: a prompt's first real token is position 0, as if it were alone. Padding
                # does not use up positions, so a padded batch may be longer than n_positions.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            # An out-of-range position would fail inside the embedding (a device assert on CUDA): say
            # which. Skipped while compiling, where the check would break the graph.
            if not torch.compiler.is_compiling() and int(position_ids.max()) >= n_positions:
                raise ValueError(f"position {int(position_ids.max())} is beyond n_positions={n_positions}")
        x = self.drop(x + self.wpe(position_ids))
        attn_mask = _attention_mask(attention_mask, past_length, T, x.device)
        for block in self.h:
            x = block(x, attn_mask, cache)
        x = self.ln_f(x)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache)


class NanoGPT2LMHeadModel(NanoGPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with its language-modelling head (tied to the token embedding)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: NanoGPT2Config):
        super().__init__(config)
        self.transformer = NanoGPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.transformer.wte = new_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits (B, T, vocab_size) and, given targets, the mean next-token cross-entropy.

        `labels` (B, T) are the inputs themselves (shifted by one inside, as in transformers);
        `shift_labels` (B, T) are already the next tokens (what a packed token loader yields).
        Targets equal to -100 are ignored. `num_items_in_batch` (transformers' name) divides the summed
        loss instead of this batch's target count: the mean over every target of a gradient-accumulated
        step, and 0, not NaN, for a batch whose targets are all ignored.
        """
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            inputs_embeds=inputs_embeds,
        )
        hidden = slice_logits_to_keep(out.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden)
        n_real = self.config.num_real_tokens
        if n_real < logits.shape[-1]:
            # Padding rows of the vocabulary are not tokens: never predict them. In place on the matmul's
            # output, which autograd does not keep, so this costs neither memory nor a copy.
            logits[..., n_real:] = float("-inf")

        loss = None
        if labels is not None or shift_labels is not None:
            if shift_labels is None:
                shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]  # (B, T): the next token, or ignore
            # fp32 softmax for a stable loss under bf16 autocast.
            loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]), shift_labels.reshape(-1).to(logits.device),
                ignore_index=-100, reduction="mean" if num_items_in_batch is None else "sum",
            )
            if num_items_in_batch is not None:
                loss = loss / num_items_in_batch
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache)
