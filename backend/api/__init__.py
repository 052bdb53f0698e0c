"""HTTP layer: the API router (``api.main``), request dependencies (``api.deps``) and one router per resource."""
