"""Logsink: the faithful record of every run and its numbered log."""
