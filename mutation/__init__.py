"""Mutation testing of the places where a bug costs money or trust: `python -m mutation`.

The Python modules are mutated by mutmut (its configuration: [tool.mutmut] in pyproject.toml);
the SQL functions and triggers, which no Python tool reaches, by the hand-written mutants of
mutation/sql_mutants.py. Mutants shown to be equivalent, with the reason, are in
mutation/equivalent.toml. Not part of CI: see the README's "For developers".
"""
