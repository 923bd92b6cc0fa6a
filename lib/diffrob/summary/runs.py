"""The Summary runs nothing on a world: it reads the claim rows that the chapters of
sections 2 to 6 recorded with :func:`diffrob.claims.record` (see :mod:`.report`)."""
