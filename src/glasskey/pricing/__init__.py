"""Model catalog and prices, token estimates, quotes, and metering of usage into charges."""
