import sys

from idp_mock.cli import main

sys.exit(main())
