"""Run the chimera CLI in this process with one fault injected at an exact point (tests only).

    python tests/fault_injection.py --signal TERM --at-step 13 -- train --cell fixed/dense ...
    python tests/fault_injection.py --signal KILL --in-checkpoint-write 5 -- train ...
    python tests/fault_injection.py --signal KILL --in-record-write 1 -- train ...
    python tests/fault_injection.py --nan-at-step 7 -- train ...
    python tests/fault_injection.py --oom-at-step 7 -- train ...
    python tests/fault_injection.py --disk-full-at-checkpoint 2 [--disk-stays-full] -- train ...

Signals are real (`os.kill` on this process: SIGKILL ends it on the spot, nothing flushed); injecting
them from inside makes the moment exact, so the kill-and-resume tests do not race a fast run.
The hooks are the library's own: `fileio._before_replace` and `checkpoint._before_swap` run between
writing a complete temporary file or folder and moving it into place.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

import torch

from chimera import cli, fileio
from chimera.records import store as records
from chimera.train import checkpoint
from chimera.train.recipe import Recipe


def _countdown(n: int, action, *, only=lambda path: True):
    calls = {"n": 0}

    def hook(path):
        if only(path):
            calls["n"] += 1
            if calls["n"] == n:
                action()
    return hook


def _disk_full(n: int, *, stays_full: bool):
    """ENOSPC from the N-th checkpoint state write (a checkpoint's last file) on, as a full disk would raise."""
    seen = {"checkpoints": 0, "full": False}

    def hook(tmp):
        if tmp.name.startswith(f".{checkpoint.STATE_FILE}."):
            seen["checkpoints"] += 1
            seen["full"] = seen["checkpoints"] == n or (stays_full and seen["checkpoints"] > n)
        if seen["full"]:
            if not stays_full:
                seen["full"] = False
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    return hook


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signal", choices=["TERM", "INT", "KILL"], default="TERM")
    parser.add_argument("--at-step", type=int, help="send the signal right after this optimiser step")
    parser.add_argument("--in-checkpoint-write", type=int, metavar="N", help="... during the N-th checkpoint swap")
    parser.add_argument("--in-record-write", type=int, metavar="N", help="... during the N-th record write")
    parser.add_argument("--nan-at-step", type=int, help="turn the weights to NaN before this step")
    parser.add_argument("--oom-at-step", type=int, help="raise torch.OutOfMemoryError in this step")
    parser.add_argument("--disk-full-at-checkpoint", type=int, metavar="N",
                        help="the N-th checkpoint's last write fails with ENOSPC (the disk frees up after it)")
    parser.add_argument("--disk-stays-full", action="store_true", help="... and every write after it fails too")
    parser.add_argument("chimera_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    signum = getattr(signal, f"SIG{args.signal}")

    def send() -> None:
        os.kill(os.getpid(), signum)

    if args.in_checkpoint_write:
        checkpoint._before_swap = _countdown(args.in_checkpoint_write, send)
    if args.in_record_write:
        # atomic_write_text also writes checkpoint JSON: count the record's temp files only
        fileio._before_replace = _countdown(args.in_record_write, send,
                                             only=lambda tmp: tmp.name.startswith(f".{records.RECORD_NAME}."))
    if args.disk_full_at_checkpoint:
        fileio._before_replace = _disk_full(args.disk_full_at_checkpoint, stays_full=args.disk_stays_full)
    if args.at_step or args.nan_at_step or args.oom_at_step:
        original = Recipe.step

        def step(self, batch):
            if self.state.step + 1 == args.oom_at_step:
                raise torch.OutOfMemoryError("CPU out of memory (injected): tried to allocate 2.00 GiB")
            if self.state.step + 1 == args.nan_at_step:
                with torch.no_grad():
                    next(self.model.parameters()).fill_(float("nan"))
            loss = original(self, batch)
            if self.state.step + 1 == args.at_step:
                send()
            return loss
        Recipe.step = step
    chimera_args = args.chimera_args[1:] if args.chimera_args[:1] == ["--"] else args.chimera_args
    return cli.main(chimera_args)


if __name__ == "__main__":
    sys.exit(main())
