"""Generates the gRPC stubs from the repository's own proto/ before building (see build_stubs.py)."""
from setuptools import setup
from setuptools.command.build_py import build_py

import build_stubs


class BuildWithStubs(build_py):
    def run(self):
        build_stubs.generate()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
