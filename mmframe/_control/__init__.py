"""The control plane: the HTTP API (:mod:`.app`) and the Prometheus metrics (:mod:`.metrics`)."""
