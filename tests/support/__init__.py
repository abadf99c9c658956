"""Code the tests share: fakes, stand-ins, builders and helpers. Test modules import from
here, never from each other; the fixtures built on these live in the conftest.py files."""
