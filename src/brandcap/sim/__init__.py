"""The simulated world the default profile runs on: synthetic shop, simulated VLM endpoint, tiny pretrained model.

Only the places where the default profile selects it import this package (tests/test_import_direction.py).
"""
