"""Receipts: the record of every request after it ran, success or failure."""
