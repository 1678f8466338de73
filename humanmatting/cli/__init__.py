"""Command-line front ends (`humanmatting ...` and `demo.py`)."""
