"""Operator API: the transaction log, reruns, health and metrics."""
