"""One module per numbered notebook: its profile table and the steps it runs.

Notebooks stay thin: a parameters cell, calls into these modules, a table, a figure, a verdict.
"""
