import sys

from mediator.cli import main

sys.exit(main())
