import sys

from weightwise.cli import main

sys.exit(main())
