"""The one exception type of the codecs."""

__all__ = ["CodecError"]


class CodecError(ValueError):
    """A record could not be encoded or decoded.

    Attributes:
        reason: short machine-readable cause, used as the dead-letter reason: ``corrupt``,
            ``unknown-schema``, ``wrong-length``, ``non-finite``, ``invalid-record``, ``invalid-id``
            or ``invalid-time``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
