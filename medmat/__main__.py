"""``python -m medmat`` runs the command-line interface."""

import sys

from medmat.cli.main import main

sys.exit(main())
