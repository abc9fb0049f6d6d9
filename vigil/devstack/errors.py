"""The one error the dev stack raises: its message is meant for the person who ran ``vigil dev up``."""


class DevStackError(RuntimeError):
    """The dev stack cannot start or is not healthy; the message says why and what to do."""
