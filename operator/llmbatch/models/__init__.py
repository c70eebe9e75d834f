"""Model sources seen from outside the engine: where a model's tokenizer is, found without
loading (or downloading) its weights. Imports only ``api`` and ``storage``."""
