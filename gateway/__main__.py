"""`python -m gateway ...` is the same as the `beacon-gateway` command."""

from gateway.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
