"""Asterisk Manager Interface: the wire parser, the connection, actions."""
