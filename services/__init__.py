"""The six Koda services, one folder each: `service.py` holds the loop, `__main__.py` starts it
(through `koda.shared.launch.run_named`). A service imports koda.shared and its own folder only.
"""
