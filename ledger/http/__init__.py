"""The HTTP layer (Falcon ASGI): parse, call a command or a query, render."""
