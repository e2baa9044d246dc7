"""Training and evaluation machinery behind trainval_net.py, test_net.py and demo.py."""
