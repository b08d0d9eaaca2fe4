"""Start the fast suite's longest tests first.

``make test`` runs on two workers (pytest-xdist). A test of 20-70 s collected near the end keeps
one worker busy after the other has run out of work; tests marked ``first`` are moved to the front
of the collection (keeping their order), so they overlap the many short ones instead.
"""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("first") is None)
