"""Request handling: the shell and control channels, stdin, comms, lifecycle."""
