"""Routes: delivering a mapped result to a destination (the shared record, CNSS, ...)."""
