"""ai-med-extract: self-hosted medical document AI."""

__version__ = "0.1.0"
