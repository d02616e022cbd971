import sys

from broker_login import main

sys.exit(main())
