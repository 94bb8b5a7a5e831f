"""The call tracker: a pure state machine from AMI events to call events (no I/O)."""
