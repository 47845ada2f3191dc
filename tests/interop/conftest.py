"""Interop tests: foreign managed identity clients against ``msi-credential emulate`` run as a command."""
