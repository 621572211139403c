"""The doors: each protocol translates its wire into executions of the core."""
