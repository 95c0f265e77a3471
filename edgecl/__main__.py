"""`python -m edgecl`: the `edgecl` command."""

from edgecl.cli import main

if __name__ == "__main__":
    main()
