"""The one exception type for a user's mistake: the `nanogpt2` command prints its message and exits 2."""


class InputError(ValueError):
    """Bad input from the user (a flag, a config key, a file, a model id); the message names what and where."""
