"""The encoder-only text classifier: pre-LN transformer blocks, masked mean pooling, a linear head.

Each block's FFN is either `DenseFFN` or, when `cfg.ffn == "moe"`, `MoEFFN` on every
`cfg.moe_every`-th block counted back from the last one. FFNs run on the packed non-padding tokens
only, so padding costs attention work but no FFN work, and MoE routing never sees a pad token.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from chimera.config import ModelConfig
from chimera.model.ffn import DenseFFN
from chimera.model.moe import MoEFFN, MoEOutput, MoEStats


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    aux_loss: torch.Tensor  # scalar: sum of the MoE layers' weighted aux losses; 0 for a dense model
    moe: list[MoEStats]  # one per MoE block, detached; empty for a dense model


def is_moe_block(cfg: ModelConfig, index: int) -> bool:
    """Every moe_every-th block counting back from the last, so the last block is always MoE."""
    return cfg.ffn == "moe" and (cfg.n_layers - 1 - index) % cfg.moe_every == 0


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask, through `F.scaled_dot_product_attention`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout_p = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v projections fused
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # key_mask: (B, 1, 1, T), True = attend
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        hs = C // self.n_heads
        q, k, v = (t.view(B, T, self.n_heads, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        dropout_p = self.dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LN: x + attn(ln(x)), then x + ffn(ln(x)) on the non-padding tokens."""

    def __init__(self, cfg: ModelConfig, *, moe: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        if moe:
            self.ffn: nn.Module = MoEFFN(
                d_model=cfg.d_model, d_ff=cfg.d_ff, num_experts=cfg.num_experts, top_k=cfg.top_k,
                expert_kind=cfg.expert_kind, capacity_factor_train=cfg.capacity_factor_train,
                capacity_factor_eval=cfg.capacity_factor_eval, aux_loss_coef=cfg.aux_loss_coef,
                z_loss_coef=cfg.z_loss_coef, dropout=cfg.dropout)
        else:
            self.ffn = DenseFFN(d_model=cfg.d_model, d_ff=cfg.d_ff, dropout=cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, MoEOutput | None]:
        """x (B, T, C); tokens (N,) flat indices of the non-padding positions."""
        B, T, C = x.shape
        x = x + self.attn(self.ln_1(x), key_mask)
        result = self.ffn(self.ln_2(x.view(B * T, C).index_select(0, tokens)))  # on (N, C) packed tokens
        moe = result if isinstance(result, MoEOutput) else None
        update = (moe.output if moe is not None else result).to(x.dtype)  # (N, C); bf16 under autocast
        x = x.view(B * T, C).index_add(0, tokens, update).view(B, T, C)  # residual; pad rows unchanged
        return x, moe


class EncoderClassifier(nn.Module):
    """`forward(input_ids (B, T), attention_mask (B, T) bool) -> ClassifierOutput`."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, max_length: int, num_classes: int = 4,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.cfg, self.pad_id, self.max_length = cfg, pad_id, max_length
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(max_length, cfg.d_model)  # learned positions
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, moe=is_moe_block(cfg, i)) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, num_classes)
        self.apply(_init_weights)  # MoEFFN initialises its own expert stacks the same way

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        B, T = input_ids.shape
        mask = attention_mask.bool()  # (B, T), True = real token
        positions = torch.arange(T, device=input_ids.device)
        x = self.emb_dropout(self.tok_emb(input_ids) + self.pos_emb(positions))  # (B, T, C)
        key_mask = mask[:, None, None, :]  # (B, 1, 1, T), broadcast over heads and queries
        tokens = mask.reshape(-1).nonzero().squeeze(1)  # (N,) packed non-padding positions
        aux_loss = x.new_zeros(())
        moe: list[MoEStats] = []
        for i, block in enumerate(self.blocks):
            x, result = block(x, key_mask, tokens)
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


def parameter_counts(model: EncoderClassifier) -> dict[str, int]:
    """total, embedding (token + position), non_embedding, and active: the parameters one token
    touches, i.e. the total minus the (E - top_k) / E share of every MoE layer's expert weights
    (embedding tables counted whole, as for Mixtral's "active parameters")."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    idle = sum(m.expert_parameter_count() * (m.num_experts - m.top_k) // m.num_experts
               for m in model.modules() if isinstance(m, MoEFFN))
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
        if isinstance(module, (nn.Embedding, nn.LayerNorm)):
            skip.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(module, MoEFFN):
            skip.update(id(getattr(module, name)) for name in module.bias_names if hasattr(module, name))
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and id(p) not in skip]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in skip]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
