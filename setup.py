"""Build hook: the wheel carries the shipped study files as ``retrocohort/studies/*.toml``.

Everything else is configured in pyproject.toml. The study files live in ``studies/`` at the top of the
source tree (where the docs, the tests and ``retrocohort run studies/...`` find them); setuptools'
``package-data`` cannot reach outside the package, so this copies them into the built package. Without
it, ``pip install .`` gives a package whose ``retrocohort demo`` and ``flagship_study()`` fail.
``retrocohort.study.STUDIES_DIR`` uses the source tree's folder when there is one (an editable install)
and the packaged copy otherwise.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

STUDIES = Path(__file__).resolve().parent / "studies"


class BuildPyWithStudies(build_py):
    """``build_py`` plus a copy of ``studies/*.toml`` into ``<build_lib>/retrocohort/studies/``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "retrocohort" / "studies"
        target.mkdir(parents=True, exist_ok=True)
        for study in sorted(STUDIES.glob("*.toml")):
            self.copy_file(str(study), str(target / study.name))


setup(cmdclass={"build_py": BuildPyWithStudies})
