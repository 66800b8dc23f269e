"""Reaching a person: the roster of who is on duty and the dial chain."""
