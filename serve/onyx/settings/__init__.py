"""Settings: command-line options generated from config dataclasses (`options`) and logging
(`logs`), shared by every `onyx` command, serving and training alike."""
