"""User-facing errors.

Every mistake a user can make (a bad objective spec, a malformed data line, a bad config value,
non-finite logits) raises a subclass of :class:`UserError`. The CLI turns these into one clear line
on stderr and exit code 2, never a traceback.
"""


class UserError(ValueError):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""


class SpecError(UserError):
    """An objective spec string that does not parse or describes an invalid f(p)."""


class NonFiniteLogitsError(UserError):
    """Logits with NaN or +inf reached a loss; the loss refuses to return a silent NaN."""


class ConfigError(UserError):
    """A config value or key that is not allowed."""
