import importlib

import pytest

PACKAGES = ["loopline.models", "loopline.models.runtime", "loopline.codec", "loopline.store"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    public = {n for n, value in vars(module).items() if not n.startswith("_") and not isinstance(value, type(module))}
    public -= {"annotations"}
    assert sorted(module.__all__) == sorted(public)
