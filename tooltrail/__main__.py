import sys

from tooltrail.cli import main

sys.exit(main())
