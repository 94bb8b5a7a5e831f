"""A PBX simulator that stands in for Asterisk 22: an AMI server, a FastAGI client, call scenarios.

It is a real network peer: the daemon connects to its AMI port and its calls ask the daemon's
FastAGI router for a queue, exactly as Asterisk's dialplan (``docker/asterisk/``) does.
"""
