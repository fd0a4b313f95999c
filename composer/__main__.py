"""`python -m composer` runs the CLI."""

import sys

from composer.cli.main import main

sys.exit(main())
