"""xaistudy: user studies of explanation methods for image classifiers.

This package is the ground floor every stage may import, and it imports no stage:
the errors, the shared vocabulary, the file helpers and the key=value reader. The
command line lives in :mod:`xaistudy.cli`, which nothing below it imports.
"""

__version__ = "0.1.0"
