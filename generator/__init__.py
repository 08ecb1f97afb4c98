"""Two4Two-style scenes: attributes, bias specifications, the torch renderer, datasets."""

GENERATOR_VERSION = "1.0.0"
