"""Compression runs that happened outside SafeShrink, as their engineers reported them."""
