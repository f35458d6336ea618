"""The one exception type for problems a user can fix.

Its message is a single line naming the file, line or key at fault and, where obvious, the fix;
`chimera.cli` turns it into exit code 2 without a traceback. Anything else is a bug.
"""


class ChimeraError(Exception):
    """A user-fixable problem: bad input, bad config, missing data or corpus."""
