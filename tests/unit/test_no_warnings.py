"""A short CPU training run raises none of the warnings the original setup complained about.

The run executes with those warning categories turned into errors: AMP deprecation
(the deprecated CUDA AMP namespace raises FutureWarning), pin_memory on a device without it (UserWarning), and the
tokenizers fork warning (printed by the Rust core to stderr, so the test reads stderr).
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains in a subprocess

WORDS = {
    0: "minister election parliament treaty border embassy summit rebels",
    1: "match season coach striker league tournament injury victory",
    2: "shares profit market earnings investors merger quarter prices",
    3: "software internet chip researchers launch wireless computer space",
}


def write_synthetic_csvs(folder, rows_per_class: int = 40) -> None:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        lines = ["text,label"]
        for label, words in WORDS.items():
            vocab = words.split()
            for _ in range(rows_per_class):
                lines.append(f'"{" ".join(rng.choice(vocab) for _ in range(12))}",{label}')
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_short_training_raises_no_amp_pin_memory_or_fork_warnings(tmp_path):
    data = tmp_path / "data"
    write_synthetic_csvs(data)
    tiny = ["data.train_pool=all", "data.train_samples=64", "data.val_samples=32", "data.test_samples=32",
            "data.vocab_size=128", "data.max_length=16", "model.d_model=16", "model.n_heads=2", "model.d_ff=32",
            "model.n_layers=1", "train.max_steps=4", "train.eval_every=2", "train.warmup_steps=1"]
    args = [sys.executable, "-W", "error::FutureWarning", "-W", "error:.*pin_memory.*:UserWarning",
            "-W", "error:.*torch[.]cuda[.]amp.*:DeprecationWarning",
            "-m", "chimera", "train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu",
            "--data-dir", str(data), "--out", str(tmp_path / "runs"), "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    for assignment in tiny:
        args += ["--set", assignment]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "huggingface/tokenizers" not in result.stderr
    assert "Warning" not in result.stderr, result.stderr[-3000:]
