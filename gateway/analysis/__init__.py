"""Code intelligence: engines (managed language servers, jedi, tree-sitter) behind one service."""
