"""``python -m xaistudy.cli``: the ``xaistudy`` command, e.g. under ``torchrun -m``."""

from xaistudy.cli import main

main()
