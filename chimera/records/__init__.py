"""The run record: its shape, its JSON schema, reading and writing it, and pure functions of a record.
Kept empty so importing one submodule (time_to_target) loads nothing else."""
