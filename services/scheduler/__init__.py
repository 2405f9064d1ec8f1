"""Scheduler: the only place where runs are born (run ids, outbox, RunRequested)."""
