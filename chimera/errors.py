"""The one exception type for problems a user can fix.

Its message is a single line naming the file, line or key at fault and, where obvious, the fix;
`chimera.cli` turns it into exit code 2 without a traceback. Anything else is a bug.
"""


class ChimeraError(Exception):
    """A user-fixable problem: bad input, bad config, missing data or corpus."""


# The exit codes of every command: chimera.cli maps ChimeraError and Ctrl-C, handlers return the others.
EXIT_FAILED = 1  # a run failed, a check found a problem or a reproduction differs
EXIT_BAD_INPUT = 2  # a ChimeraError: one line on stderr, no traceback
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; a resumable checkpoint was written
