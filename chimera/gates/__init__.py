"""Results in, verdict out: convergence bands over run records (bands.py, data in bands/) and the speed
gate over benchmark JSON (bench_gate.py). Nothing here imports torch, the trainer or the model."""
