"""`python -m banglaocr` runs the console script."""

from banglaocr.cli import main

if __name__ == "__main__":
    main()
