"""Package layout (everything else is in pyproject.toml).

The repository keeps `baselines/` and `conf/` at its top level; installed, they live inside
the package as `foads.baselines` and `foads.conf`, so nothing is installed under a generic
top-level name and a wheel carries its configs. The package lists are found, not written, so
that adding a method folder or a config file needs no edit here.
"""

from setuptools import find_namespace_packages, find_packages, setup

packages = find_packages("src")
packages += ["foads.baselines"] + [f"foads.baselines.{p}" for p in find_packages("baselines")]
conf = [f"foads.conf.{p}" for p in find_namespace_packages("conf", exclude=["*__pycache__*", "local"])]
packages += ["foads.conf", *conf]

setup(
    packages=packages,
    package_dir={"": "src", "foads.baselines": "baselines", "foads.conf": "conf"},
    package_data={
        **{p: ["*.yaml"] for p in ["foads.conf", *conf]},
        "foads.baselines": ["*/README.md"],
        # The paper's published numbers that `foads.report --paper` compares with.
        "foads.outputs": ["paper_results.csv"],
    },
)
