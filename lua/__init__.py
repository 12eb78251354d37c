"""The Lua scripts of sharq_fast.

This folder is installed as the package ``sharq_fast.lua`` (see ``package-dir`` in
pyproject.toml), so the scripts load the same way from a wheel, an sdist install and an
editable install: ``importlib.resources.files("sharq_fast.lua")``.
"""
