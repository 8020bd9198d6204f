import sys

from ..commands.demo import main

sys.exit(main())
