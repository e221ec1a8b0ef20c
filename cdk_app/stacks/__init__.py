"""Stacks: each composes constructs and exposes what later stacks need as typed attributes."""
