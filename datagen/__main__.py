"""``python -m datagen`` (and ``torchrun ... -m datagen``): the ``datagen`` command."""

import sys

from datagen.cli import main

sys.exit(main())
