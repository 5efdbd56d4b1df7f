"""`python -m vigil`."""

from vigil.cli import main

raise SystemExit(main())
