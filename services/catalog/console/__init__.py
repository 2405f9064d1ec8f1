"""The web console (the guide's "Connect page"): sign-in, sessions and static assets served by the catalog.

Wiring lives in `services.catalog.console.routes` (kept out of this module so the API's dependencies
can import the session store without importing the routes).
"""
