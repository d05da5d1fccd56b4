import sys

from mediator.entry import main

sys.exit(main())
