"""Overseer: one experiment-tracked repository for three model families.

The library is pure functions and small classes; the DVC stages in ``stages/`` are the thin
wiring that reads params, calls this library, writes outputs and logs the run.
"""

__version__ = "0.1.0"
