"""The ``llmbatch`` command."""
