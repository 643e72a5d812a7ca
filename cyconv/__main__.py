"""``python -m cyconv``: the same as the ``cyconv`` command."""

from .cli import main

raise SystemExit(main())
