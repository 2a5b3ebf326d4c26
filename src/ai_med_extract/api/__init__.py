"""HTTP layer: routes, dependencies, middleware and the error handler."""
