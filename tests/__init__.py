"""The test suite. A package, so that pytest puts the repository root on ``sys.path``
for tests/conftest.py, never tests/ itself, whose folders are named like the packages
they test."""
