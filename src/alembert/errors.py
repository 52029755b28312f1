"""The one exception type that reaches the user as a single line (exit code 2, no traceback)."""


class AlembertError(Exception):
    """Bad input from the user: a file, a row, a column, a recipe key, a model.

    The message names the place (file and row, or the recipe key's path) and what was expected;
    the CLI prints it as one line and exits with code 2.
    """
