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
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["pipelines", "pipelines.*", "transforms",
                                               "transforms.*", "connectors", "connectors.*",
                                               "sandbox", "sandbox.*"]),
    package_data={"pipelines": ["dataflows/*.yaml"], "sandbox": ["*.xml", "*.graphql"]},
    install_requires=[
        "apache-beam>=2.60,<3",
        "graphql-core>=3.2,<3.3",
        "pyarrow>=14,<26",
        "PyYAML>=6",
        "requests>=2.31",
        "werkzeug>=3",
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]>=2.60,<3", "google-cloud-firestore>=2.16",
                "google-cloud-secret-manager>=2.20"],
        # [gcp] too: the tests build Dataflow jobs (dry runs) and read Secret Manager fakes
        "test": ["pytest>=8", "hypothesis>=6.100", "apache-beam[gcp]>=2.60,<3",
                 "google-cloud-firestore>=2.16", "google-cloud-secret-manager>=2.20"],
    },
    entry_points={"console_scripts": ["talksync=pipelines.cli:main"]},
)
