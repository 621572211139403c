"""Pure functions between wire types and core models. No I/O."""
