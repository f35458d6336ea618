"""Proof that a step mode asks the GPU nothing: steps of every transformer cell under
`torch.cuda.set_sync_debug_mode("error")`, which raises at the first operation that waits for the device.

    python bench/sync_check.py --steps 100 [--mode graph] [--precision bf16] [--profile ci]

Warm-up steps (compilation, CUDA-graph recording) run before the mode is set; then every step of every cell
must pass. Prints one line per cell; exit 1 when any step synchronised, 2 without CUDA (nothing to check).
Run by scripts/gpu_check.sh on a GPU machine.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.harness import StepBench, transformer_cells
from chimera.matrix import load_matrix
from chimera.train.device import choose_policy, configure_process, probe_device
from chimera.train.run import build_accelerator

WARMUP_STEPS = 3  # reduce-overhead records its CUDA graphs during the first calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per cell after warm-up (default 100)")
    parser.add_argument("--mode", default="graph", choices=("compile", "graph"), help="step mode (default graph)")
    parser.add_argument("--precision", default="auto", help="train.precision (default auto: bf16 where native)")
    parser.add_argument("--profile", default="ci", help="matrix profile whose shapes are used (default ci)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("sync_check: no CUDA device; set_sync_debug_mode checks CUDA synchronisation only", file=sys.stderr)
        return 2
    policy = choose_policy(probe_device("cuda"), precision=args.precision, step_mode=args.mode)
    configure_process(policy)
    accelerator = build_accelerator(policy)
    failed = False
    for cell in transformer_cells(args.profile):
        config = load_matrix().resolve(cell, args.profile, device="cuda")
        bench = StepBench.for_config(config, policy, accelerator, step_mode=args.mode)
        for _ in range(WARMUP_STEPS):
            bench.recipe.step(bench.batch)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(args.steps):
                bench.recipe.step(bench.batch)
            verdict = f"ok: {args.steps} steps, no synchronisation"
        except RuntimeError as exc:
            failed, verdict = True, f"SYNCED: {str(exc).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        print(f"{cell} ({args.mode}, {policy.precision}): {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
