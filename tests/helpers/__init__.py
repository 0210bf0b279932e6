"""Helpers shared by every test layer (unit/, integration/, e2e/): paths, the CLI runner, and the
writers of test inputs. `pytest.ini` puts tests/ on sys.path, so tests import them as `helpers.<module>`."""
