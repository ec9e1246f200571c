"""``python -m explorer.train``: the training command line, :mod:`explorer.training.__main__`."""

from explorer.training.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
