"""Entry point: python -m device_agent --kit DIR."""

import sys

from device_agent.cli import main

sys.exit(main())
