"""SKAI hotline call intake service."""
