"""The operator console: a static page over the operator API, served at ``/console``."""
