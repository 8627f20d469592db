"""Faust agents: thin shells that consume, call a broker-free core, send its outputs, then ack."""
