"""The one training loop, checkpoints, EMA and distributed helpers.

Calling the package, ``genlab.train("vae", ...)``, is the Python API's train (genlab/api.py; see genlab/__init__.py).
"""
