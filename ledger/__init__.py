"""ledger: an event-sourced payments ledger service."""
