"""The exit codes of `jewelry-fanout`, in one place (the package docstring says what each means)."""

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_START, EXIT_DEAD_LETTERS = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process ended by Ctrl-C
