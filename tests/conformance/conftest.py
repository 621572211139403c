"""The conformance suite's npm packages live in node_modules/ here; pytest has nothing to collect there."""

collect_ignore_glob = ["node_modules/*"]
