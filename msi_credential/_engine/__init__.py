"""The sans-I/O managed identity engine: no sockets, no sleeping, no clock of its own.

Both credential faces run the same engine; the drivers in ``msi_credential._transport`` perform its effects.
"""
