"""Development mode (`connect dev`): the whole system on one machine, with demo data."""

from services.dev.demo import run_dev

__all__ = ["run_dev"]
