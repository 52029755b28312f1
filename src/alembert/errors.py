"""The one exception type that reaches the user as a single line (exit code 2, no traceback)."""


class AlembertError(Exception):
    """Bad input from the user: a file, a row, a column, a recipe key, a model.

    The message names the place (file and row, or the recipe key's path) and what was expected;
    the CLI prints it as one line and exits with code 2.
    """


def printable(text) -> str:
    """A key, column name or label as it reads in a one-line message: line breaks and control characters escaped."""
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def short_repr(value, limit: int = 60) -> str:
    """repr of a value from the user's input, cut short so a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
