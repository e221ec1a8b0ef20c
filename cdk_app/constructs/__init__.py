"""Constructs, one concern each, with keyword-only props; stacks compose them."""
