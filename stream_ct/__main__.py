import sys

from stream_ct.cli import main

sys.exit(main())
