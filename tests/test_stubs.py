"""The compiled core's typing stub describes the same API as the pure core."""

import ast
import inspect
from pathlib import Path

import pytest

from sharq_fast import _core_py

STUB = Path(_core_py.__file__).with_name("_core_c.pyi")


def public_functions(module):
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    }


def stub_signatures():
    tree = ast.parse(STUB.read_text())
    return {
        node.name: [arg.arg for arg in node.args.args]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_stub_lists_exactly_the_pure_core_api(core):
    assert set(stub_signatures()) == set(public_functions(_core_py))


def test_stub_parameters_match_the_pure_core(core):
    stubs = stub_signatures()
    for name, function in public_functions(_core_py).items():
        assert stubs[name] == list(inspect.signature(function).parameters), name


def test_compiled_core_has_the_same_functions(core):
    compiled = pytest.importorskip("sharq_fast._core_c")
    missing = [name for name in stub_signatures() if not callable(getattr(compiled, name, None))]
    assert missing == []
