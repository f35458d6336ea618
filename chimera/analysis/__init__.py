"""Records in, meaning out: the doctor and its checks, the leakage scan, the report and its figures, and
the record diff. Nothing here imports torch, the trainer or the model (tests/unit/test_import_boundaries.py)."""
