"""Run the slow tests first, so parallel runners (pytest -n) start them on separate nodes."""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
