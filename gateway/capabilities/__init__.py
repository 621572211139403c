"""Built-in capabilities, each module with a `register(registry, config)` function."""
