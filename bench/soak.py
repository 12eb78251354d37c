"""The crash and restart soak (issue 14): ``python bench/soak.py --jobs N --duration S``.

The same as ``sharq-fast soak`` (the body is sharq_fast/_soak.py; its --help lists the
options). A short run is tests/test_soak.py (CI); the README gives a 1,000,000-job run.
"""

import sys

from sharq_fast._soak import main

if __name__ == "__main__":
    sys.exit(main())
