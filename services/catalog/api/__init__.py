"""The REST API `/api/v1`: resource routers, bearer-token auth and one JSON error shape."""
