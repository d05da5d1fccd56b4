"""The door: decide whether a received message is accepted, store it durably, build the answer."""
