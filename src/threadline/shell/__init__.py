"""IPython integration: the shell, rich display, and thread-aware streams."""
