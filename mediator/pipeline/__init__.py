"""The worker side: per-patient ordered dispatch and the processing steps of one message."""
