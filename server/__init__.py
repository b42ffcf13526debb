"""The HTTP gateway: app factory, settings, middleware and the gateway subsystems."""
