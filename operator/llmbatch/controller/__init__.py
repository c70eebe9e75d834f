"""The kopf operator. Importing this package registers the handlers (``kopf run -m
llmbatch.controller``); the pure builders and the state machine live in their own modules."""

from llmbatch.controller import handlers as handlers
