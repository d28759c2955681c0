"""Networks and decoders, one module per family."""
