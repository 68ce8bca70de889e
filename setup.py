"""talksync: open-source two-way sync of customers, products and orders between webshops and
ERPs, as Apache Beam pipelines (DirectRunner locally, Dataflow when one machine is not enough).
"""

import setuptools

setuptools.setup(
    name="talksync",
    version="0.1.0",
    description="Two-way sync of customers, products and orders between webshops and ERPs, "
                "on Apache Beam.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["core", "core.*", "connectors", "connectors.*",
                                               "transforms", "transforms.*", "pipelines",
                                               "pipelines.*", "sandbox", "sandbox.*"]),
    package_data={"core": ["dataflows/*.yaml"], "sandbox": ["*.xml", "*.graphql"]},
    # Ranges say what talksync works with; requirements.txt says exactly what `make demo`,
    # `make test`, CI and Dataflow install (`make lock` refreshes it; README "Dependencies").
    install_requires=[
        "apache-beam>=2.60,<3",
        "pyarrow>=14,<26",
        "PyYAML>=6",
        "requests>=2.31",
        "tenacity>=8.2",
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]>=2.60,<3", "google-cloud-firestore>=2.16",
                "google-cloud-secret-manager>=2.20"],
        # the emulators' servers (`talksync sandbox serve`, `talksync demo`, the tests);
        # Dataflow workers do not install them
        "sandbox": ["graphql-core>=3.2,<3.3", "werkzeug>=3"],
        # the tests build Dataflow jobs (dry runs) and read Secret Manager fakes: with [gcp]
        "test": ["pytest>=8", "hypothesis>=6.100", "pillow>=10", "ruff>=0.6", "mypy>=1.10",
                 "import-linter>=2.0", "mutmut>=3", "pytest-xdist>=3.5",
                 # third-party clients that drive the emulators (issue 16) and random test order
                 "gql[requests]>=3.5", "python-odata>=0.8", "exactonline>=0.4",
                 "pytest-randomly>=3.15"],
    },
    entry_points={"console_scripts": ["talksync=pipelines.cli:main"]},
)
