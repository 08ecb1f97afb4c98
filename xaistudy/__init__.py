"""The ``xaistudy`` command line: thin click commands over the platform's packages."""

__version__ = "0.1.0"
