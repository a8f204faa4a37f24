"""Wiring, settings and the command line: where the plain actor classes become a Ray system."""
