"""Read models in raw SQL: users, accounts with balances, payments.

Each module holds the SQL that keeps its tables up to date, its read queries, and
`rebuild` rebuilds all of them from the event log alone.
"""
