"""The catalog's adapters: each implements a port of `services/catalog/ports.py` on one kind of I/O.

- `repository`: the catalog's own records (MongoDB, database `catalog`; a store each: `records`) and its
  outbox;
- `runs_read_model`: the run history the logsink writes, and the executor's rejected records;
- `read_models`: the scheduler's schedule state (next and previous run) and group runs in flight;
- `audience_schema`: a new table's collection and indexes in the audience database;
- `sftp_probe`: an SFTP server's host key, and a connection test (asyncssh).
"""
