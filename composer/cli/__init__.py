"""The `composer` command: one module per verb; only this package prints or exits."""

import gc

# Loading models and stacks creates many long-lived objects and almost no garbage cycles;
# the default thresholds make the collector walk them again and again (a third of
# `composer config`'s time). Collect rarely instead: memory stays bounded.
gc.set_threshold(50_000, 20, 100)
