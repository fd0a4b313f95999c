"""The `composer` command: one module per verb; only this package prints or exits."""
