"""Slow, obviously-correct pure-PyTorch versions of every op: the tests' ground truth
and the "torch" backend. Written from the definitions, not for speed."""
