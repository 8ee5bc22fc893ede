//! Application state and request dispatch: aloud's own endpoints versus proxied routes.
