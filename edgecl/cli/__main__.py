"""`python -m edgecl.cli`: the `edgecl` command (as `python -m edgecl`)."""

from edgecl.cli.entry import main

if __name__ == "__main__":
    main()
