"""API keys: their format and hashing, their policy, budgets and rate limits, and their explanation."""
