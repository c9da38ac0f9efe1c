"""``python -m workers.i18n update|compile``: see :mod:`workers.i18n.catalogues`."""

import sys

from .catalogues import main

sys.exit(main(sys.argv))
