"""The composition root: the `vigil` command and the services it wires together. Only it imports everything."""
