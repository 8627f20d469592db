"""One import name from the repository's layout: ``streams/`` installs as ``loopline`` and ``models/`` as
``loopline.models``; nothing else lands at the top level of site-packages. The rest of the project's
metadata is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

FOLDERS = {"loopline": "streams", "loopline.models": "models"}
"""Each import name and the folder of the checkout it is built from."""


def packages() -> list[str]:
    found = []
    for name, folder in FOLDERS.items():
        subs = find_namespace_packages(include=[folder, f"{folder}.*"], exclude=["*__pycache__*"])
        found += [name + sub.removeprefix(folder) for sub in subs]
    return found


setup(
    packages=packages(),
    package_dir=FOLDERS,
    # schemas/ and ops/ of the checkout, linked under streams/resources (copied into a wheel)
    package_data={
        "loopline.resources": [
            "schemas/*.avsc",
            "schemas/previous/*.avsc",
            "clickhouse/*.sql",
            "kafka/pom.xml",
            "kafka/log4j.properties",
            "kafka/server.properties.template",
        ]
    },
)
