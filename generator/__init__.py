"""Two4Two-style scenes: attributes, bias specifications, the torch renderer, datasets."""
