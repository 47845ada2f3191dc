"""Engine flows driven without sockets (tests/scripted.py): what the mutation run found unguarded."""
