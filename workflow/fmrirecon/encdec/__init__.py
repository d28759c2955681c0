"""Papers 002 (ssl) and 000 (loopencdec): the shared encoder, the attention decoder, the decoders."""
