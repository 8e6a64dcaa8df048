"""`python -m onyx` is the `onyx` command."""

from __future__ import annotations

from onyx.cli import main

if __name__ == "__main__":
    main()
