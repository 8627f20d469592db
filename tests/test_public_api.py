"""The declared APIs: each package's ``__all__`` against what it holds, and ``loopline``'s own names: every
one resolves, is documented, and ``import loopline`` stays light."""

import doctest
import importlib
import importlib.metadata
import inspect
import subprocess
import sys

import pytest

import loopline

PACKAGES = ["loopline.models", "loopline.models.runtime", "loopline.codec", "loopline.store"]
HEAVY = ("torch", "onnxruntime", "river", "chdb")
"""What ``import loopline`` must not import: a producer encoding events needs none of them."""


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    public = {n for n, value in vars(module).items() if not n.startswith("_") and not isinstance(value, type(module))}
    public -= {"annotations"}
    assert sorted(module.__all__) == sorted(public)


@pytest.mark.parametrize("name", loopline.__all__)
def test_every_public_name_resolves_to_a_documented_object(name):
    value = getattr(loopline, name)
    assert inspect.getdoc(value), name
    assert value.__module__.startswith("loopline."), name


def test_the_package_lists_its_public_names_and_no_others():
    assert len(set(loopline.__all__)) == len(loopline.__all__)
    assert set(loopline._HOMES) == set(loopline.__all__)  # nothing resolves that is not listed
    assert dir(loopline) == sorted(loopline.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Worker'"):
        loopline.Worker  # noqa: B018
    assert loopline.__version__ == importlib.metadata.version("loopline")


def test_importing_the_package_imports_no_model_runtime_drift_or_store_library():
    code = f"import sys, loopline; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert imported == ""


@pytest.mark.parametrize("name", ["loopline", "loopline.events", "loopline.codec.typed"])
def test_the_examples_in_the_docstrings_run(name):
    failed, attempted = doctest.testmod(importlib.import_module(name))
    assert attempted and not failed
