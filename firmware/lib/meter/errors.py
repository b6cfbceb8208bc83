"""The one user-facing error type.

Every refusal a user can cause (a bad setting, the module lock, a token,
a counter reset, a service or an update) raises a subclass of UserError.
Its str() is already worded for the user; the edges (the display, the
Web Admin, the API, the cloud) turn it into a message with message() and
never show anything else. Anything that is not a UserError is a fault:
it is logged where it is caught (task and connection boundaries only)
and the user is told "internal error", never a traceback.
"""


class UserError(ValueError):
    """Refused; str() says why, for the user. status: the HTTP status."""

    status = 400


def message(e, width=0):
    """What to tell the user about e; width > 0 cuts it for small screens."""
    s = str(e) if isinstance(e, UserError) else "internal error"
    return s[:width] if width else s
