"""The InfiniBand lab: an ibsim fabric managed by a real OpenSM, and a UFM REST contract simulator.

`python -m lab.ib subnet|pkeys|teardown|ufm`; see lab/ib/__main__.py.
"""
