"""The time-to-quality peer: what a user writes instead of our pipeline, timed the way our records time us.

transformers' `Trainer` trains `BertForSequenceClassification` FROM SCRATCH (a BertConfig, nothing
downloaded) with a cell's shapes (hidden = d_model, layers, heads, intermediate = d_ff, dropout on
hidden states and attention probabilities, max positions = max_length) and hyper-parameters (lr,
weight decay, betas, grad clip, label smoothing, warmup, schedule and max_steps, so the lr curve is
ours up to the warmup's first step: HF's starts at 0, ours at lr/(warmup+1); batch size; evaluation
every eval_every steps on 256-row batches, as ours; seed). It sees the rows and token ids our run
sees: the same seeded subsets and our trained tokenizer, encoded by our `encode_batch`, padded per
batch. No augmentation: a user without our pipeline has none. Used by bench/test_bench_ttq.py.

Clocks, as `chimera.records.time_to_target` counts ours: `wall_s` from `on_train_begin` to the end of each
evaluation (evaluations included), `train_s` the summed `on_step_begin` -> `on_step_end` spans, which
hold forward, backward, clipping, the optimiser and scheduler steps and nothing else (the Trainer
fetches the batch before `on_step_begin` and evaluates after `on_step_end`); on CUDA these spans are
not synchronised, so there `train_s` is approximate. Bench-only code: nothing under chimera/ imports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from chimera.config import RunConfig
from chimera.data.dataset import load_ag_news
from chimera.data.subsets import Subsets, TextSplit, make_subsets
from chimera.data.tokenizer import EncodedDataset, PadCollate, TokenizerBundle, build_tokenizer
from chimera.records.record import TargetTime, TimingPoint
from chimera.records.time_to_target import time_to_target
from chimera.train.run_setup import EVAL_BATCH_SIZE, NUM_CLASSES

# our schedule names -> transformers' (ours always warms up first; HF's plain "constant" would not)
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass(frozen=True)
class PeerEvaluation:
    """One evaluation of the peer: what `time_to_target` reads (val_loss without label smoothing)."""

    step: int
    val_acc: float | None
    val_loss: float | None


@dataclass(frozen=True)
class PeerRun:
    """What the peer did: time_to_target entries (as `chimera.records.time_to_target` gives ours), sources."""

    time_to_target: list[TargetTime]
    curves: list[PeerEvaluation]
    timing: list[TimingPoint]  # step, train_s, wall_s per evaluation, cumulative (no interval figures)
    steps: int
    params: int
    attn_implementation: str
    optim: str


def load_run_data(config: RunConfig, *, data_dir: Path | None,
                  cache_dir: Path | None) -> tuple[Subsets, TokenizerBundle]:
    """The subsets and tokenizer `chimera.train.run_setup.prepare_inputs` builds for this config and seed."""
    subsets = make_subsets(load_ag_news(data_dir, train_pool=config.data.train_pool), config.data, config.seed)
    bundle = build_tokenizer(subsets.train.texts, vocab_size=config.data.vocab_size,
                             lowercase=config.data.lowercase, cache_dir=cache_dir)
    return subsets, bundle


class TargetClock(transformers.TrainerCallback):
    """Records val accuracy and both clocks at every evaluation; stops training once every target is
    reached, or at the first evaluation at or past `step_budget` (so a peer that never gets there ends)."""

    def __init__(self, targets: list[tuple[str, float]], *, step_budget: int, samples_per_step: int) -> None:
        self.targets, self.step_budget, self.samples_per_step = targets, step_budget, samples_per_step
        self.curves: list[PeerEvaluation] = []
        self.timing: list[TimingPoint] = []
        self.train_s = 0.0
        self.started = self.step_started = time.perf_counter()

    def entries(self) -> list[TargetTime]:
        return time_to_target(self.curves, self.timing, self.targets, samples_per_step=self.samples_per_step)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_s += time.perf_counter() - self.step_started

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        wall_s = time.perf_counter() - self.started
        metrics = metrics or {}
        self.curves.append(PeerEvaluation(step=state.global_step, val_acc=metrics.get("eval_val_acc"),
                                          val_loss=metrics.get("eval_val_loss")))
        self.timing.append(TimingPoint(step=state.global_step, step_time_s=None, samples_per_s=None,
                                       train_s=self.train_s, wall_s=wall_s))
        if state.global_step >= self.step_budget or all(entry.reached for entry in self.entries()):
            control.should_training_stop = True
        return control


def val_metrics(prediction: transformers.EvalPrediction) -> dict[str, float]:
    """Accuracy and clean cross-entropy (no label smoothing), as `chimera.train.evaluate` measures ours."""
    logits = torch.as_tensor(prediction.predictions, dtype=torch.float32)
    labels = torch.as_tensor(prediction.label_ids, dtype=torch.long)
    return {"val_acc": float((logits.argmax(-1) == labels).float().mean()),
            "val_loss": float(F.cross_entropy(logits, labels))}


class HFPadCollate(PadCollate):
    """Our padding, with the int64 attention mask a Hugging Face tokenizer returns."""

    def __call__(self, rows):
        batch = super().__call__(rows)
        batch["attention_mask"] = batch["attention_mask"].long()
        return batch


def bert_for(config: RunConfig, tokenizer: TokenizerBundle) -> transformers.BertForSequenceClassification:
    m = config.model
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.n_layers,
        num_attention_heads=m.n_heads, intermediate_size=m.d_ff, hidden_act="gelu",
        hidden_dropout_prob=m.dropout, attention_probs_dropout_prob=m.dropout,
        max_position_embeddings=config.data.max_length, pad_token_id=tokenizer.pad_id, num_labels=NUM_CLASSES))


def training_arguments(config: RunConfig, out_dir: Path, *,
                       mixed_precision: str = "no") -> transformers.TrainingArguments:
    tc = config.train
    return transformers.TrainingArguments(
        output_dir=str(out_dir), seed=config.seed, max_steps=tc.max_steps,
        per_device_train_batch_size=tc.batch_size, per_device_eval_batch_size=EVAL_BATCH_SIZE,
        learning_rate=tc.lr, weight_decay=tc.weight_decay, adam_beta1=tc.betas[0], adam_beta2=tc.betas[1],
        max_grad_norm=tc.grad_clip, label_smoothing_factor=tc.label_smoothing,
        warmup_steps=tc.warmup_steps, lr_scheduler_type=SCHEDULES[tc.schedule],
        eval_strategy="steps", eval_steps=tc.eval_every, save_strategy="no", report_to="none",
        use_cpu=config.device == "cpu", bf16=mixed_precision == "bf16", fp16=mixed_precision == "fp16",
        disable_tqdm=True,
        remove_unused_columns=False)  # rows are (ids, label) pairs, not named dataset columns


def run_peer(config: RunConfig, *, train: TextSplit, val: TextSplit, tokenizer: TokenizerBundle, out_dir: Path,
             step_budget: int, mixed_precision: str = "no") -> PeerRun:
    """Train the peer until every target of `config.evaluation` is reached or `step_budget` steps; time it."""
    transformers.set_seed(config.seed)  # the model is built before the Trainer seeds anything
    model = bert_for(config, tokenizer)
    length = config.data.max_length
    args = training_arguments(config, out_dir, mixed_precision=mixed_precision)
    clock = TargetClock(config.evaluation.targets(), step_budget=step_budget,
                        samples_per_step=config.train.batch_size * args.world_size)
    trainer = transformers.Trainer(
        model=model, args=args, data_collator=HFPadCollate(tokenizer.pad_id),
        train_dataset=EncodedDataset(train, tokenizer, length), eval_dataset=EncodedDataset(val, tokenizer, length),
        compute_metrics=val_metrics, callbacks=[clock])
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # no metrics dicts on stdout
    trainer.train()
    return PeerRun(time_to_target=clock.entries(), curves=clock.curves, timing=clock.timing,
                   steps=trainer.state.global_step, params=sum(p.numel() for p in model.parameters()),
                   attn_implementation=model.config._attn_implementation,
                   optim=getattr(args.optim, "value", str(args.optim)))
