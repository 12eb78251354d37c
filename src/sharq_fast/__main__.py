"""``python -m sharq_fast``: the ``sharq-fast`` command line."""

import sys

from .cli import main

sys.exit(main())
