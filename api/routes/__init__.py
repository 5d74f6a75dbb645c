"""One module per resource; ``api.router`` collects them."""
