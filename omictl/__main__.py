"""``python -m omictl``."""

from omictl.cli import main

if __name__ == "__main__":
    main()
