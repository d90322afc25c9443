"""Text: coarse captions from manifest rules, describers of five attributes."""
