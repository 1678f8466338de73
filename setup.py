"""Packaging; metadata and options live in setup.cfg."""

from pathlib import Path

from setuptools import setup

# Shipped weights and their model cards live in the repository's `models/`; a regular (not
# editable) install places them under <prefix>/share/humanmatting/models.
MODEL_FILES = sorted(str(p) for p in Path("models").glob("*") if p.is_file())

setup(data_files=[("share/humanmatting/models", MODEL_FILES)])
