"""Routes: the ways to serve a model, and the choice among them for a key."""
