"""What the CLI's exit status means (a contract scripts rely on)."""

EXIT_OK = 0  # success
EXIT_FAILED = 1  # the work ran and found failure
EXIT_USAGE = 2  # usage or configuration error, told on one line
EXIT_INTERRUPTED = 130  # Ctrl-C, like a shell
