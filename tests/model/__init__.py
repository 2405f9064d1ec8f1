"""Reference models of the data plane, written from the rules (DESIGN §4, docs/executor.md, the counting
rules of issue #12), not from the executor's code. The differential property tests compare the real
executor with them."""
