"""glasskey: an OpenAI-compatible AI token gateway whose API keys are not black boxes."""

__version__ = "0.1.0"
