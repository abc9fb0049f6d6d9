"""The one error every check of a declaration raises (metadata, parameters, prefilters, steps, the tuning file's
settings), so whoever loads a detection catches one kind of error and shows its message."""


class DetectionError(ValueError):
    """A detection declared with metadata the engine cannot run or catalogue; the message names the field."""
