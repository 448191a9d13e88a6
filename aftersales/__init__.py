"""The application: the `aftersales` command, service registry, HTTP health, AsyncAPI."""
