"""`python -m alembert` runs the command line."""
import sys

from alembert.cli import main

sys.exit(main())
