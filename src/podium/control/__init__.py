"""The control layer: what limits and accounts for work (budgets, breakers, slots).

Each concern lives in its own module; nothing is re-exported here yet.
"""
