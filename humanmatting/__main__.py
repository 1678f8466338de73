"""`python -m humanmatting ...`"""

import sys

from humanmatting.cli.main import main

sys.exit(main())
