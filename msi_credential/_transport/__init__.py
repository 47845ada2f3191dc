"""Drivers: they perform the engine's effects, sync or async. No protocol logic lives here."""
