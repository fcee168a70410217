"""exray: backdoor scanning that tells injected backdoors from natural ones."""

__version__ = "0.1.0"
