"""The run record: its typed shape (record), upgrades of older versions (upgrade), reading, checking and
writing it (store, record.schema.json), and pure functions of a record (time_to_target). Kept empty, so
importing one submodule loads only what that one needs."""
