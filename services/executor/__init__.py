"""Executor: claims runs, does the data work, reports progress and logs; scaled horizontally."""
