"""FastAGI: the dialplan asks the router where each call goes (``agi://HOST:4573/route``)."""
