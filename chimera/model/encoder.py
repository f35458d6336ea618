"""The encoder-only text classifier: pre-LN transformer blocks, masked mean pooling, a linear head.

Each block's FFN is either `DenseFFN` or, when `cfg.ffn == "moe"`, `MoEFFN` on every
`cfg.moe_every`-th block counted back from the last one. FFNs run on the packed non-padding tokens
only, so padding costs attention work but no FFN work, and MoE routing never sees a pad token. With
`static_shapes` (compiled steps) the FFN runs on every position instead: packing has a data-dependent
shape and its `nonzero` waits for the device; pad positions never reach a real token's output anyway
(masked as attention keys and out of the pooling).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from chimera.config import ModelConfig
from chimera.model.layers import DenseFFN, Dropout, dropout

if TYPE_CHECKING:  # the MoE modules load only with a MoE block (Block.__init__), so a dense run never imports them
    from chimera.model.moe import MoEOutput, MoEStats


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    aux_loss: torch.Tensor  # scalar: sum of the MoE layers' weighted aux losses; 0 for a dense model
    moe: list[MoEStats]  # one per MoE block, detached; empty for a dense model


def is_moe_block(cfg: ModelConfig, index: int) -> bool:
    """Every moe_every-th block counting back from the last, so the last block is always MoE."""
    return cfg.ffn == "moe" and (cfg.n_layers - 1 - index) % cfg.moe_every == 0


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask.

    `F.scaled_dot_product_attention` wherever it can use a fused kernel: always in eval, and in
    training on CUDA/MPS. CPU training with attention dropout would take SDPA's unfused math path,
    whose `bernoulli_` mask alone cost more than the attention matmuls; `attention_with_dropout`
    is that same math with `chimera.model.layers`'s cheaper mask.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout_p = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v projections fused
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape  # key_mask: (B, 1, 1, T), True = attend; None = attend everywhere
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_heads
        q, k, v = (t.view(B, T, self.n_heads, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.training and self.dropout_p > 0.0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, key_mask, self.dropout_p)
        else:
            dropout_p = self.dropout_p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.dropout(self.proj(y))


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                           p: float) -> torch.Tensor:
    """softmax(q kᵀ / √hs, masked) with dropout, @ v: q, k, v (B, nh, T, hs); key_mask (B, 1, 1, T) True = attend.

    Masked scores get the dtype's lowest value, not -inf, so a row with no real key cannot turn
    into NaN (the [CLS] position makes that impossible in practice).
    """
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, nh, T, T)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    return dropout(scores.softmax(dim=-1), p, training=True) @ v


class Block(nn.Module):
    """Pre-LN: x + attn(ln(x)), then x + ffn(ln(x)) on the non-padding tokens.

    `tokens` None means the batch has no padding: the FFN then runs on the (B·T, C) view directly,
    skipping the gather and scatter that packing would spend copying every row.
    """

    def __init__(self, cfg: ModelConfig, *, moe: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.is_moe = moe
        if moe:
            from chimera.model.moe import MoEFFN

            self.ffn: nn.Module = MoEFFN(
                d_model=cfg.d_model, d_ff=cfg.d_ff, num_experts=cfg.num_experts, top_k=cfg.top_k,
                expert_kind=cfg.expert_kind, capacity_factor_train=cfg.capacity_factor_train,
                capacity_factor_eval=cfg.capacity_factor_eval, aux_loss_coef=cfg.aux_loss_coef,
                z_loss_coef=cfg.z_loss_coef, dropout=cfg.dropout)
        else:
            self.ffn = DenseFFN(d_model=cfg.d_model, d_ff=cfg.d_ff, dropout=cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, tokens: torch.Tensor | None,
                token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, MoEOutput | None]:
        """x (B, T, C); tokens (N,) flat indices of the non-padding positions, or None (no padding or static
        shapes); token_mask (B·T,) True for real tokens, for a MoE FFN under static shapes."""
        B, T, C = x.shape
        x = x + self.attn(self.ln_1(x), key_mask)
        flat = x.view(B * T, C)
        ffn_input = self.ln_2(flat if tokens is None else flat.index_select(0, tokens))  # (N, C) packed
        # static shapes: every position reaches the FFN; a MoE layer gives the pads no slot (token_mask)
        result = self.ffn(ffn_input) if token_mask is None else self.ffn(ffn_input, token_mask)
        moe = result if self.is_moe else None
        update = (moe.output if moe is not None else result).to(x.dtype)  # (N, C); bf16 under autocast
        flat = flat + update if tokens is None else flat.index_add(0, tokens, update)  # residual; pad rows unchanged
        return flat.view(B, T, C), moe


class EncoderClassifier(nn.Module):
    """`forward(input_ids (B, T), attention_mask (B, T) bool) -> ClassifierOutput`."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, max_length: int, num_classes: int = 4,
                 pad_id: int = 0, static_shapes: bool = False) -> None:
        super().__init__()
        self.cfg, self.pad_id, self.max_length = cfg, pad_id, max_length
        self.static_shapes = static_shapes  # no data-dependent shape or host sync: see forward
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(max_length, cfg.d_model)  # learned positions
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, moe=is_moe_block(cfg, i)) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head_dropout = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, num_classes)
        self.apply(_init_weights)  # MoEFFN initialises its own expert stacks the same way

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        B, T = input_ids.shape
        mask = attention_mask.bool()  # (B, T), True = real token
        positions = torch.arange(T, device=input_ids.device)
        x = self.emb_dropout(self.tok_emb(input_ids) + self.pos_emb(positions))  # (B, T, C)
        if self.static_shapes:  # every row and position computed, pads masked out of attention and pooling
            padded, tokens = True, None  # a fixed-shape eval batch's filler rows (no token) count in no metric
        else:  # a batch of full-length rows needs neither mask nor packing; a padded one packs its tokens
            padded = not bool(mask.all())
            tokens = mask.reshape(-1).nonzero().squeeze(1) if padded else None  # (N,) packed non-padding positions
        key_mask = mask[:, None, None, :] if padded else None  # (B, 1, 1, T), broadcast over heads and queries
        aux_loss = x.new_zeros(())
        moe: list[MoEStats] = []
        token_mask = mask.reshape(-1) if self.static_shapes and self.cfg.ffn == "moe" else None  # (B·T,)
        for i, block in enumerate(self.blocks):
            x, result = block(x, key_mask, tokens, token_mask if block.is_moe else None)
            if result is not None:
                aux_loss = aux_loss + result.aux_loss
                moe.append(result.stats(i))
        x = self.ln_f(x)
        weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, C) masked mean
        logits = self.head(self.head_dropout(pooled))  # (B, num_classes)
        return ClassifierOutput(logits=logits, aux_loss=aux_loss, moe=moe)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """total, embedding (every embedding table: token + position, or the n-gram bag), non_embedding,
    and active: the parameters one token
    touches, i.e. the total minus the (E - top_k) / E share of every MoE layer's expert weights
    (embedding tables counted whole, as for Mixtral's "active parameters")."""
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)))
    idle = sum(m.expert_parameter_count() * (m.num_experts - m.top_k) // m.num_experts for m in _moe_layers(model))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding,
            "active": total - idle}


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay the weight matrices (Linear weights, router, expert weight stacks),
    not biases (including the stacked expert biases), LayerNorm parameters or embeddings.

    Decay regularises the scale of the matrices that mix features, which is where over-fitting
    capacity lives. Biases and LayerNorm gains are few and set offsets and scales directly: pulling
    them towards zero fights the normalisation rather than regularising. An embedding row gets a
    gradient only when its token occurs but (decoupled) decay every step, so decay mostly erases
    rare tokens. Standard practice: BERT's recipe exempts biases and LayerNorm, minGPT also
    embeddings.
    """
    skip = set()
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm)):
            skip.update(id(p) for p in module.parameters(recurse=False))
    for module in _moe_layers(model):
        skip.update(id(getattr(module, name)) for name in module.bias_names if hasattr(module, name))
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and id(p) not in skip]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in skip]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _moe_layers(model: nn.Module) -> list[nn.Module]:
    """The model's MoE FFNs; none when chimera.model.moe was never imported (no model built one)."""
    moe = sys.modules.get("chimera.model.moe")
    return [] if moe is None else [m for m in model.modules() if isinstance(m, moe.MoEFFN)]
