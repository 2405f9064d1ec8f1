"""Development mode (`connect dev`): the whole system on one machine, with demo data.

Nothing is imported here, so `python -m services.dev.broker` (run by make) starts without loading the
services; `connect dev` imports `services.dev.demo.run_dev`.
"""
