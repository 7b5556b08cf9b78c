"""accessbench: quality, cost per token and the language tax of open-weight LLMs on affordable hardware."""

__version__ = "0.1.0"
