"""``python -m zeroserve`` runs the command line."""

from zeroserve.cli.main import main

if __name__ == "__main__":
    main()
