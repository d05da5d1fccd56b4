"""Inbound adapters: bytes in from the network (MLLP, HTTP), answers out. No business logic here."""
