"""Zero-shot classification from the text tower."""
