"""Protocol-faithful fakes of the PBX for tests (see ``ami_server``)."""
