"""python -m minimal.evaluate: see minimal/evaluate/__init__.py."""
import sys

from . import main

sys.exit(main())
