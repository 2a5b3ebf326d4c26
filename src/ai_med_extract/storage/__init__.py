"""Data at rest: the Fernet cipher and the encrypted file store."""
