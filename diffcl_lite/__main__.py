"""``python -m diffcl_lite ...`` — see :mod:`diffcl_lite.cli`."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
