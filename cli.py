"""`python -m cli` from a checkout of the repository: the `edgecl` command (edgecl/cli/). Installed, the command is
the `edgecl` script (or `python -m edgecl`); this file is not installed, so no global `cli` module is claimed."""

from edgecl.cli import main

if __name__ == "__main__":
    main()
