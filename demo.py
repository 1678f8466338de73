"""Human matting demo: `python demo.py 0` (webcam), `python demo.py PATH` (image or video).

See `python demo.py --help`; the implementation lives in `humanmatting/cli/demo.py`.
"""

import sys

from humanmatting.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
